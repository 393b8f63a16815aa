// SPDX-License-Identifier: GPL-2.0
/*
 * Does SK_PASS on a TCP socket deliver every byte once? (issue 16, "a bounded kernel upload":
 * parking needs it.) Usage: skpass-recv BPF_OBJECT GIB [TRANSFERS]
 *
 * Each transfer is a fresh loopback TCP connection whose receiving socket is in a sockmap with
 * skpass-recv.bpf.c's verdict (SK_PASS for every skb). A child process sends GIB GiB of a
 * pattern (each 8-byte word is its own offset) in writes of random size, pausing now and then; the
 * receiver reads with recv() into buffers of random size and sleeps now and then, so that its
 * receive buffer fills and the window closes, as it would while parked. Every byte is checked, and
 * the total must be exact: a duplicated segment shows as a wrong word and as extra bytes.
 * Prints one line per transfer and a summary; exits 1 on any error.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define CHUNK	  (256 * 1024)
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void fill(uint8_t *buf, uint64_t off, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t o = off + i, word = o & ~7ULL;

		buf[i] = (uint8_t)(word >> (8 * (o & 7)));
	}
}

static void sender(int fd, uint64_t total, unsigned seed)
{
	static uint8_t buf[CHUNK];
	uint64_t off = 0;

	srand(seed);
	while (off < total) {
		size_t len = 1 + (size_t)rand() % CHUNK;

		if (len > total - off)
			len = total - off;
		fill(buf, off, len);
		for (size_t done = 0; done < len;) {
			ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

			if (n < 0)
				die("send");
			done += (size_t)n;
		}
		off += len;
		if (rand() % 512 == 0)
			usleep(1000 + rand() % 5000);
	}
	shutdown(fd, SHUT_WR);
	_exit(0);
}

/* Returns the number of wrong or extra bytes; prints the first wrong offset. */
static uint64_t receiver(int fd, uint64_t total, unsigned seed)
{
	static uint8_t buf[CHUNK], want[CHUNK];
	uint64_t off = 0, bad = 0;

	srand(seed * 7 + 1);
	for (;;) {
		size_t len = 1 + (size_t)rand() % (128 * 1024);
		ssize_t n = recv(fd, buf, len, 0);

		if (n < 0)
			die("recv");
		if (n == 0)
			break;
		size_t cmp = off >= total ? 0 : (size_t)MIN((uint64_t)n, total - off);

		fill(want, off, cmp);
		if (memcmp(buf, want, cmp)) {
			for (size_t i = 0; i < cmp; i++)
				if (buf[i] != want[i]) {
					if (!bad)
						printf("  first wrong byte at offset %llu\n",
						       (unsigned long long)(off + i));
					bad++;
				}
		}
		off += (uint64_t)n;
		if (rand() % 256 == 0)
			usleep(2000 + rand() % 10000);
	}
	if (off < total) {
		printf("  short by %llu bytes\n", (unsigned long long)(total - off));
		bad += total - off;
	} else if (off > total) {
		printf("  %llu bytes more than were sent\n", (unsigned long long)(off - total));
		bad += off - total;
	}
	return bad;
}

/* What the verdict program counted, from its .bss: proof that it saw the bytes. */
static uint64_t passed(struct bpf_object *obj)
{
	struct bpf_map *m;
	uint32_t key = 0;
	uint64_t v = 0;

	bpf_object__for_each_map(m, obj) if (strstr(bpf_map__name(m), ".bss"))
		bpf_map_lookup_elem(bpf_map__fd(m), &key, &v);
	return v;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	unsigned transfers = argc > 3 ? (unsigned)atoi(argv[3]) : 1;
	uint64_t total, all = 0, errors = 0, failed = 0;
	struct bpf_object *obj;
	int map_fd, prog_fd, one = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: %s BPF_OBJECT GIB [TRANSFERS]\n", argv[0]);
		return 2;
	}
	total = (uint64_t)(atof(argv[2]) * (1ULL << 30));
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj))
		die("loading the BPF object");
	map_fd = bpf_object__find_map_fd_by_name(obj, "skpass_socks");
	prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "skpass"));
	if (bpf_prog_attach(prog_fd, map_fd, BPF_SK_SKB_STREAM_VERDICT, 0))
		die("attaching the verdict");

	for (unsigned t = 0; t < transfers; t++) {
		int l = socket(AF_INET, SOCK_STREAM, 0), c, s;
		uint32_t key = 0;
		uint64_t bad;
		pid_t pid;
		struct timespec t0, t1;

		a.sin_port = 0;
		if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
		    getsockname(l, (struct sockaddr *)&a, &alen))
			die("listen");
		c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)))
			die("connect");
		s = accept(l, NULL, NULL);
		if (s < 0)
			die("accept");
		close(l);
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		uint64_t sfd = (uint64_t)s;
		if (bpf_map_update_elem(map_fd, &key, &sfd, BPF_ANY))
			die("inserting the socket");
		clock_gettime(CLOCK_MONOTONIC, &t0);
		pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			close(s);
			sender(c, total, t + 1);
		}
		close(c);
		bad = receiver(s, total, t + 1);
		waitpid(pid, NULL, 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		close(s);
		all += total;
		errors += bad;
		failed += bad != 0;
		printf("transfer %u: %.2f GiB in %.1f s, %llu wrong bytes; the verdict has passed "
		       "%.2f GiB in all\n",
		       t + 1, (double)total / (1ULL << 30),
		       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
		       (unsigned long long)bad, (double)passed(obj) / (1ULL << 30));
		fflush(stdout);
	}
	printf("%u transfers, %.1f GiB checked, %llu failed, %llu wrong bytes\n", transfers,
	       (double)all / (1ULL << 30), (unsigned long long)failed, (unsigned long long)errors);
	return errors ? 1 : 0;
}
