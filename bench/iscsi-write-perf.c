/*
 * iscsi-write-perf: sequential WRITE(16) load generator over libiscsi, the
 * write-side companion of libiscsi's read-only iscsi-perf, so that bench/io.sh
 * drives tgt and oxcopyd with the same neutral client.
 *
 *   iscsi-write-perf [-i initiator] [-m queue_depth] [-b blocks_per_write]
 *                    [-t seconds] iscsi://host:port/iqn/lun
 *
 * Keeps queue_depth WRITE(16)s in flight, sequentially through the LUN
 * (wrapping at the end), for the given time, then drains and prints
 *   RESULT iops=<n> mib_s=<x> bytes=<n> secs=<x>
 * Exit status 0 on success, 1 on a usage error, 10 on an iSCSI/SCSI error.
 *
 * Build: cc -O2 -o iscsi-write-perf iscsi-write-perf.c -liscsi   (libiscsi-dev)
 */
#include <getopt.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

struct state {
	struct iscsi_context *iscsi;
	int lun;
	uint32_t block_size;
	uint64_t num_blocks;
	uint64_t next_lba;
	uint32_t blocks_per_io;
	int in_flight;
	int max_in_flight;
	int stop;
	int failed;
	uint64_t done_ios;
	uint64_t done_bytes;
	double deadline;
	unsigned char *buf;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill(struct state *s);

static void write_cb(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct state *s = private_data;
	struct scsi_task *task = command_data;

	s->in_flight--;
	if (status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "WRITE(16) failed: status %d: %s\n", status, iscsi_get_error(iscsi));
		s->failed = 1;
		s->stop = 1;
	} else {
		s->done_ios++;
		s->done_bytes += task->expxferlen;
	}
	scsi_free_scsi_task(task);
	if (now_s() >= s->deadline)
		s->stop = 1;
	fill(s);
}

static void fill(struct state *s)
{
	while (!s->stop && s->in_flight < s->max_in_flight) {
		uint64_t lba = s->next_lba;
		uint32_t n = s->blocks_per_io;

		if (lba + n > s->num_blocks) {
			lba = 0;
		}
		s->next_lba = lba + n;
		if (iscsi_write16_task(s->iscsi, s->lun, lba, s->buf, n * s->block_size, s->block_size,
				       0, 0, 0, 0, 0, write_cb, s) == NULL) {
			fprintf(stderr, "cannot queue WRITE(16): %s\n", iscsi_get_error(s->iscsi));
			s->failed = 1;
			s->stop = 1;
			return;
		}
		s->in_flight++;
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: iscsi-write-perf [-i initiator] [-m queue_depth] [-b blocks_per_write] "
			"[-t seconds] iscsi://host:port/iqn/lun\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *initiator = "iqn.2026-11.dev.oxcopy:write-perf";
	struct state s;
	struct iscsi_url *url;
	struct scsi_task *task;
	struct scsi_readcapacity16 *rc16;
	double seconds = 10, start;
	int c;

	memset(&s, 0, sizeof(s));
	s.max_in_flight = 8;
	s.blocks_per_io = 2048;
	while ((c = getopt(argc, argv, "i:m:b:t:")) != -1) {
		switch (c) {
		case 'i': initiator = optarg; break;
		case 'm': s.max_in_flight = atoi(optarg); break;
		case 'b': s.blocks_per_io = (uint32_t)atoi(optarg); break;
		case 't': seconds = atof(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || s.max_in_flight < 1 || s.blocks_per_io < 1 || seconds <= 0)
		usage();

	s.iscsi = iscsi_create_context(initiator);
	if (s.iscsi == NULL) {
		fprintf(stderr, "cannot create iSCSI context\n");
		return 10;
	}
	url = iscsi_parse_full_url(s.iscsi, argv[optind]);
	if (url == NULL) {
		fprintf(stderr, "bad URL: %s\n", iscsi_get_error(s.iscsi));
		return 1;
	}
	iscsi_set_targetname(s.iscsi, url->target);
	iscsi_set_session_type(s.iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(s.iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (iscsi_full_connect_sync(s.iscsi, url->portal, url->lun) != 0) {
		fprintf(stderr, "login failed: %s\n", iscsi_get_error(s.iscsi));
		return 10;
	}
	s.lun = url->lun;
	iscsi_destroy_url(url);

	task = iscsi_readcapacity16_sync(s.iscsi, s.lun);
	if (task == NULL || task->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "READ CAPACITY(16) failed: %s\n", iscsi_get_error(s.iscsi));
		return 10;
	}
	rc16 = scsi_datain_unmarshall(task);
	if (rc16 == NULL) {
		fprintf(stderr, "cannot parse READ CAPACITY(16) data\n");
		return 10;
	}
	s.block_size = rc16->block_length;
	s.num_blocks = rc16->returned_lba + 1;
	scsi_free_scsi_task(task);
	if (s.num_blocks < s.blocks_per_io) {
		fprintf(stderr, "LUN smaller than one write\n");
		return 1;
	}

	s.buf = malloc((size_t)s.blocks_per_io * s.block_size);
	if (s.buf == NULL) {
		fprintf(stderr, "out of memory\n");
		return 10;
	}
	for (size_t i = 0; i < (size_t)s.blocks_per_io * s.block_size; i++)
		s.buf[i] = (unsigned char)(i * 131 + 7);

	printf("sequential WRITE(16) of %u blocks (%u bytes), %d in flight, %.1f s, LUN of %llu blocks\n",
	       s.blocks_per_io, s.blocks_per_io * s.block_size, s.max_in_flight, seconds,
	       (unsigned long long)s.num_blocks);
	start = now_s();
	s.deadline = start + seconds;
	fill(&s);
	while (s.in_flight > 0) {
		struct pollfd pfd = { .fd = iscsi_get_fd(s.iscsi), .events = iscsi_which_events(s.iscsi) };

		if (poll(&pfd, 1, 1000) < 0)
			continue;
		if (iscsi_service(s.iscsi, pfd.revents) < 0) {
			fprintf(stderr, "iscsi_service: %s\n", iscsi_get_error(s.iscsi));
			s.failed = 1;
			break;
		}
		if (now_s() >= s.deadline)
			s.stop = 1;
	}
	double secs = now_s() - start;

	printf("RESULT iops=%.0f mib_s=%.1f bytes=%llu secs=%.3f\n", s.done_ios / secs,
	       s.done_bytes / secs / (1024.0 * 1024.0), (unsigned long long)s.done_bytes, secs);
	iscsi_logout_sync(s.iscsi);
	iscsi_destroy_context(s.iscsi);
	free(s.buf);
	return s.failed ? 10 : 0;
}
