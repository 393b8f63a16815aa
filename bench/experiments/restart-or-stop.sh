#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Can a service tell `systemctl restart` from `systemctl stop` when SIGTERM comes (systemd 252, the
# nspawn harness of tests/systemd-lib.sh)? The signal is the same; the unit's pending job is not.
# A service with sockredir's sandbox settings asks the system bus, on SIGTERM, for its unit's Job
# and that job's JobType, and writes the answer down.
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib.sh
source "$TOP/tests/lib.sh"
# shellcheck source=tests/systemd-lib.sh
source "$TOP/tests/systemd-lib.sh"
SD_BARE=1
sd_setup "$@"

ct_write /usr/local/bin/jobprobe 0755 <<'SH'
#!/bin/bash
probe() {
	local job type
	job=$(busctl --system get-property org.freedesktop.systemd1 \
		/org/freedesktop/systemd1/unit/jobprobe_2eservice org.freedesktop.systemd1.Unit Job 2>&1)
	# "(uo) 123 "/org/freedesktop/systemd1/job/123""
	path=$(sed -n 's/.*"\(\/org\/freedesktop\/systemd1\/job\/[0-9]*\)".*/\1/p' <<<"$job")
	type=$(busctl --system get-property org.freedesktop.systemd1 "$path" \
		org.freedesktop.systemd1.Job JobType 2>&1)
	echo "job: $job; type: $type" >>/var/lib/jobprobe/log
	exit 0
}
trap probe TERM
echo "started $$" >>/var/lib/jobprobe/log
while :; do sleep 1 & wait $!; done
SH
ct mkdir -p /var/lib/jobprobe
# sockredir@.service's sandbox, as far as it concerns the bus: no network of its own, AF_UNIX only,
# a read-only /run, no new privileges.
ct_write /etc/systemd/system/jobprobe.service 0644 <<'UNIT'
[Service]
ExecStart=/usr/local/bin/jobprobe
PrivateNetwork=yes
RestrictAddressFamilies=AF_UNIX
ProtectSystem=strict
ReadWritePaths=/var/lib/jobprobe
ProtectHome=yes
PrivateTmp=yes
NoNewPrivileges=yes
UNIT
ct_systemctl daemon-reload
ct_systemctl start jobprobe.service
sleep 0.5
ct_systemctl restart jobprobe.service
sleep 0.5
ct_systemctl stop jobprobe.service
ct_systemctl start jobprobe.service
sleep 0.5
ct_systemctl kill --signal=SIGTERM jobprobe.service
sleep 0.5
ct cat /var/lib/jobprobe/log | sed 's/^/# /'
