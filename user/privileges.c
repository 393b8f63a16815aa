// SPDX-License-Identifier: GPL-2.0
/*
 * Least privilege. Loading and attaching needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (and
 * CAP_SYS_ADMIN to mount bpffs if it is missing); afterwards every sockhash update, peer entry
 * and drain probe needs only CAP_BPF, plus CAP_NET_ADMIN for SO_SNDBUFFORCE with
 * --kernel-upload. Found by trying: see tests/t-capabilities.sh.
 *
 * Raw capget/capset, so that libcap is not a dependency for five lines.
 */
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "privileges.h"
#include "util.h"

int capabilities_keep_only(uint64_t keep)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = {};
	uint64_t have;

	if (syscall(SYS_capget, &hdr, data) < 0)
		return negative_errno();
	have = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	keep &= have;

	/* The bounding set first: dropping from it needs CAP_SETPCAP, which goes next. */
	for (unsigned long cap = 0; cap <= CAP_LAST_CAP; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM)
			return negative_errno();
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return negative_errno();

	for (int i = 0; i < 2; i++) {
		uint32_t part = (uint32_t)(keep >> (32 * i));

		data[i].effective = part;
		data[i].permitted = part;
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		return negative_errno();
	return 0;
}
