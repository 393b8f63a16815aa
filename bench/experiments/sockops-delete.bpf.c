// SPDX-License-Identifier: GPL-2.0
/*
 * Experiment (bench/EXPERIMENTS.md): can a sock_ops program, which runs under the socket lock,
 * delete a socket from a sockhash, and does BPF_SOCK_OPS_PARSE_HDR_OPT_CB fire for every received
 * segment? counts[0]: sockets established, [1]: PARSE_HDR_OPT callbacks, [2]: deletes that
 * succeeded, [3]: inserts from sock_ops.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u64);
} verdict SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static void bump(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &i);
	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("sockops")
int probe_ops(struct bpf_sock_ops *ops)
{
	__u64 cookie;

	switch (ops->op) {
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		bpf_sock_ops_cb_flags_set(ops, ops->bpf_sock_ops_cb_flags |
						       BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		bump(0);
		/* Insert from sock_ops: allowed (bpf_sock_hash_update). */
		cookie = bpf_get_socket_cookie(ops);
		if (bpf_sock_hash_update(ops, &verdict, &cookie, BPF_ANY) == 0)
			bump(3);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		bump(1);
		cookie = bpf_get_socket_cookie(ops);
		if (bpf_map_delete_elem(&verdict, &cookie) == 0)
			bump(2);
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
