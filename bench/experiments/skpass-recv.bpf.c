// SPDX-License-Identifier: GPL-2.0
/*
 * The foundation of "parking" a kernel upload (issue 16): a verdict program on a TCP socket that
 * returns SK_PASS, so that the skb is charged to the socket (skb_set_owner_r) and queued to the
 * psock's ingress_msg for recv() to read. KERNEL-NOTES saw SK_PASS deliver one segment twice in a
 * proxy; skpass-recv.c checks every byte of long transfers through this program alone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} skpass_socks SEC(".maps");

__u64 passed_bytes;

SEC("sk_skb/stream_verdict")
int skpass(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&passed_bytes, skb->len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
