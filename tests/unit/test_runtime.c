/* test_runtime.c - runtime status strings, checksum (XXH64 vectors, every length,
 * single-bit sensitivity), blob header/check on good and hostile blobs, mapping and
 * file reading, size helpers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/elide_rt.h"

Test(rt_status, strings_and_names)
{
	for (int s = 0; s < ELIDE_STATUS_COUNT; s++) {
		const char *m = elide_status_str((elide_status)s);
		cr_assert_not_null(m);
		cr_assert_neq(strcmp(m, "unknown status"), 0, "status %d has no message", s);
		for (int t = 0; t < s; t++)
			cr_assert_str_neq(m, elide_status_str((elide_status)t), "duplicate message %d/%d", s, t);
		cr_assert_eq(strncmp(elide_status_name((elide_status)s), "ELIDE_", 6), 0);
	}
	cr_assert_str_eq(elide_status_str(ELIDE_OK), "ok");
	cr_assert_str_eq(elide_status_str(ELIDE_ERR_BLOB_CHECKSUM), "weight blob checksum mismatch");
	cr_assert_str_eq(elide_status_name(ELIDE_ERR_POS), "ELIDE_ERR_POS");
	cr_assert_str_eq(elide_status_name(ELIDE_ERR_ABI), "ELIDE_ERR_ABI");
	cr_assert_str_eq(elide_status_str((elide_status)ELIDE_STATUS_COUNT), "unknown status");
	cr_assert_str_eq(elide_status_str((elide_status)-1), "unknown status");
	cr_assert_str_eq(elide_status_name((elide_status)999), "ELIDE_UNKNOWN");
	cr_assert_eq(elide_rt_abi_version(), ELIDE_RT_ABI_VERSION);
	/* the order of the brief is ABI */
	cr_assert_eq(ELIDE_ERR_ARG, 1);
	cr_assert_eq(ELIDE_ERR_IO, 2);
	cr_assert_eq(ELIDE_ERR_NO_WEIGHTS, 9);
	cr_assert_eq(ELIDE_ERR_SEQ_LEN, 12);
}

Test(rt_checksum, xxh64_vectors)
{
	const char *s = "Nobody inspects the spammish repetition";
	cr_assert_eq(elide_checksum(NULL, 0), 0xEF46DB3751D8E999ull);
	cr_assert_eq(elide_checksum("a", 1), 0xD24EC4F1A98C6E5Bull);
	cr_assert_eq(elide_checksum("abc", 3), 0x44BC2CF5AD770999ull);
	cr_assert_eq(elide_checksum(s, strlen(s)), 0xFBCEA83C8A378BF1ull);
}

Test(rt_checksum, every_length_and_bit)
{
	unsigned char buf[300];
	uint64_t rng = 7;
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)elide_rng_next(&rng);
	/* prefixes differ from each other, and flipping any bit changes the sum */
	uint64_t prev = 0;
	for (size_t n = 0; n <= sizeof buf; n++) {
		uint64_t h = elide_checksum(buf, n);
		cr_assert_neq(h, prev, "length %zu", n);
		prev = h;
	}
	uint64_t h0 = elide_checksum(buf, sizeof buf);
	for (size_t i = 0; i < sizeof buf; i++)
		for (int b = 0; b < 8; b++) {
			buf[i] ^= (unsigned char)(1u << b);
			cr_assert_neq(elide_checksum(buf, sizeof buf), h0, "byte %zu bit %d", i, b);
			buf[i] ^= (unsigned char)(1u << b);
		}
	/* unaligned input gives the same sum as aligned input */
	unsigned char *u = malloc(sizeof buf + 1);
	memcpy(u + 1, buf, sizeof buf);
	cr_assert_eq(elide_checksum(u + 1, sizeof buf), h0);
	free(u);
	/* swapping two 8-byte words is detected */
	unsigned char t[8];
	memcpy(t, buf, 8);
	memcpy(buf, buf + 8, 8);
	memcpy(buf + 8, t, 8);
	cr_assert_neq(elide_checksum(buf, sizeof buf), h0);
}

Test(rt_checksum, speed)
{
	/* best of three over 32 MiB: hundreds of MB/s in an optimised build (it runs at
	 * GB/s); only a sanity floor in unoptimised or sanitizer builds */
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__)
	const double floor_mbs = 300;
#else
	const double floor_mbs = 30;
#endif
	size_t n = 32u << 20;
	unsigned char *b = malloc(n);
	memset(b, 0x5a, n);
	double best = 1e9;
	for (int r = 0; r < 3; r++) {
		uint64_t t0 = elide_now_ns();
		volatile uint64_t h = elide_checksum(b, n);
		(void)h;
		double s = (double)(elide_now_ns() - t0) * 1e-9;
		if (s < best)
			best = s;
	}
	free(b);
	double mbs = (double)n / best / 1e6;
	cr_log_info("checksum: %.0f MB/s", mbs);
	cr_assert_geq(mbs, floor_mbs, "checksum at %.0f MB/s", mbs);
}

#define MODEL 0x1234abcd5678ef01ull

/* A blob of `payload` bytes in 64-aligned heap memory. */
static unsigned char *
make_blob(size_t payload, size_t *size)
{
	*size = ELIDE_BLOB_HEADER_SIZE + payload;
	unsigned char *b = aligned_alloc(64, elide_align_up(*size + 64, 64));
	uint64_t rng = 42;
	for (size_t i = 0; i < payload; i++)
		b[ELIDE_BLOB_HEADER_SIZE + i] = (unsigned char)elide_rng_next(&rng);
	elide_blob_header_init(b, MODEL, b + ELIDE_BLOB_HEADER_SIZE, payload);
	return b;
}

Test(rt_blob, header_layout)
{
	size_t size;
	unsigned char *b = make_blob(1000, &size);
	elide_blob_header h;
	memcpy(&h, b, 64);
	cr_assert_eq(memcmp(b, "ELIDEWB\0", 8), 0);
	cr_assert_eq(h.version, 2u);
	cr_assert_eq(h.header_size, 64u);
	cr_assert_eq(h.model_hash, MODEL);
	cr_assert_eq(h.payload_size, 1000u);
	/* the checksum covers the header: XXH64 of the header holding XXH64(payload) */
	uint64_t want = h.checksum;
	h.checksum = elide_checksum(b + 64, 1000);
	cr_assert_eq(want, elide_checksum(&h, 64));
	uint32_t v;
	uint64_t w;
	memcpy(&v, b + 8, 4);
	cr_assert_eq(v, 2u);
	memcpy(&w, b + 24, 8);
	cr_assert_eq(w, 1000u);
	for (int i = 40; i < 64; i++)
		cr_assert_eq(b[i], 0);
	free(b);
}

Test(rt_blob, good)
{
	size_t size, psize = 0;
	unsigned char *b = make_blob(4096, &size);
	const void *pl = NULL;
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_OK);
	cr_assert_eq(pl, b + 64);
	cr_assert_eq(psize, 4096u);
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_OK);
	free(b);
	/* an empty payload is a valid blob */
	b = make_blob(0, &size);
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_OK);
	cr_assert_eq(psize, 0u);
	free(b);
}

Test(rt_blob, hostile)
{
	size_t size;
	unsigned char *b = make_blob(4096, &size);
	const void *pl = (const void *)1;
	size_t psize = 77;
	/* truncated anywhere, including inside the header */
	for (size_t n = 0; n < size; n += (n < 80 ? 1 : 509))
		cr_assert_eq(elide_blob_check(b, n, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_ERR_BLOB_SIZE, "n=%zu", n);
	/* trailing bytes */
	cr_assert_eq(elide_blob_check(b, size + 1, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_ERR_BLOB_SIZE);
	/* another model */
	cr_assert_eq(elide_blob_check(b, size, MODEL ^ 1, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_ERR_BLOB_MODEL);
	/* outputs untouched on failure */
	cr_assert_eq(pl, (const void *)1);
	cr_assert_eq(psize, 77u);
	/* every flipped payload byte */
	for (size_t i = 64; i < size; i += 61) {
		b[i] ^= 0x10;
		cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_CHECKSUM, "i=%zu", i);
		b[i] ^= 0x10;
	}
	/* flipped stored checksum */
	b[32] ^= 1;
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_CHECKSUM);
	b[32] ^= 1;
	/* bad magic, even with a short buffer */
	b[0] = 'X';
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_MAGIC);
	cr_assert_eq(elide_blob_check(b, 10, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_MAGIC);
	b[0] = 'E';
	b[7] = 'x'; /* the NUL is part of the magic */
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_MAGIC);
	b[7] = 0;
	/* version */
	b[8] = 1;
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_VERSION);
	b[8] = 2;
	/* header size: not a multiple of 64, past the end, below 64 */
	uint32_t hs[] = { 65, 0, 32, 0x7fffffc0u };
	for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
		memcpy(b + 12, &hs[i], 4);
		cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_SIZE, "hs %u", hs[i]);
	}
	uint32_t h64 = 64;
	memcpy(b + 12, &h64, 4);
	/* payload size inconsistent (huge value: no overflow, no read past the end) */
	uint64_t ps[] = { 4095, 4097, UINT64_MAX, UINT64_MAX - 63 };
	for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
		memcpy(b + 24, &ps[i], 8);
		cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_SIZE);
	}
	uint64_t p4096 = 4096;
	memcpy(b + 24, &p4096, 8);
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_OK);
	/* the caller's payload size (NAME_WEIGHTS_SIZE - 64) */
	cr_assert_eq(elide_blob_check(b, size, MODEL, 4096, NULL, NULL), ELIDE_OK);
	cr_assert_eq(elide_blob_check(b, size, MODEL, 4095, NULL, NULL), ELIDE_ERR_BLOB_SIZE);
	cr_assert_eq(elide_blob_check(b, size, MODEL, 8192, NULL, NULL), ELIDE_ERR_BLOB_SIZE);
	/* misaligned payload */
	unsigned char *m = aligned_alloc(64, size + 64);
	memcpy(m + 8, b, size);
	cr_assert_eq(elide_blob_check(m + 8, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_ALIGN);
	free(m);
	cr_assert_eq(elide_blob_check(NULL, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_ARG);
	free(b);
}

/* Rewrites the checksum of the blob b (header at b, payload after hsize bytes) as
 * docs/blob.md defines it, as a tamperer would. */
static void
reseal(unsigned char *b, size_t hsize, uint64_t payload)
{
	elide_blob_header h;
	memcpy(&h, b, 64);
	h.checksum = elide_checksum(b + hsize, payload);
	h.checksum = elide_checksum(&h, 64);
	memcpy(b, &h, 64);
}

Test(rt_blob, header_covered_and_reserved_zero)
{
	size_t size;
	unsigned char *b = make_blob(4096, &size);
	/* the checksum covers every header byte: another model's hash copied in, or any
	 * flipped byte of the header, fails */
	for (int i = 8; i < 64; i++) {
		if (i >= 32 && i < 40)
			continue; /* the checksum itself */
		b[i] ^= 0x01;
		elide_status s = elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL);
		cr_assert_neq(s, ELIDE_OK, "flip at %d accepted", i);
		b[i] ^= 0x01;
	}
	uint64_t other = MODEL ^ 0xff00;
	memcpy(b + 16, &other, 8);
	cr_assert_eq(elide_blob_check(b, size, other, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_ERR_BLOB_CHECKSUM);
	memcpy(b + 16, &(uint64_t){ MODEL }, 8);
	/* reserved bytes 40..63: zero, even with the checksum rewritten to match */
	for (int i = 40; i < 64; i++)
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (unsigned char)(1 << bit);
			reseal(b, 64, 4096);
			cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL),
			             ELIDE_ERR_BLOB_VERSION, "byte %d bit %d", i, bit);
			b[i] ^= (unsigned char)(1 << bit);
		}
	reseal(b, 64, 4096);
	cr_assert_eq(elide_blob_check(b, size, MODEL, 4096, NULL, NULL), ELIDE_OK);
	/* half a payload with its size and checksum rewritten: the caller's size rejects it */
	uint64_t half = 2048;
	memcpy(b + 24, &half, 8);
	reseal(b, 64, half);
	cr_assert_eq(elide_blob_check(b, 64 + half, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_OK);
	cr_assert_eq(elide_blob_check(b, 64 + half, MODEL, 4096, NULL, NULL), ELIDE_ERR_BLOB_SIZE);
	free(b);
}

Test(rt_blob, larger_header_accepted)
{
	/* a blob whose header was padded to 128 bytes (zeros) is still valid */
	size_t payload = 256, size = 128 + payload;
	unsigned char *b = aligned_alloc(64, size);
	memset(b, 0, size);
	for (size_t i = 0; i < payload; i++)
		b[128 + i] = (unsigned char)i;
	elide_blob_header_init(b, MODEL, b + 128, payload);
	uint32_t hs = 128;
	memcpy(b + 12, &hs, 4);
	reseal(b, 128, payload);
	const void *pl;
	size_t psize;
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_OK);
	cr_assert_eq(pl, b + 128);
	cr_assert_eq(psize, payload);
	/* the padding must be zero */
	b[100] = 1;
	cr_assert_eq(elide_blob_check(b, size, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_ERR_BLOB_VERSION);
	free(b);
}

static char *
tmp_path(const char *name)
{
	static char buf[4][256];
	static int k;
	char *p = buf[k++ % 4];
	snprintf(p, 256, "%s/rt_%d_%s", P_tmpdir, (int)getpid(), name);
	return p;
}

static void
write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

Test(rt_blob, map_and_open)
{
	size_t size;
	unsigned char *b = make_blob(100000, &size);
	char *path = tmp_path("good.weights");
	write_file(path, b, size);

	elide_mapping m;
	cr_assert_eq(elide_blob_map(path, &m), ELIDE_OK);
	cr_assert_eq(m.size, size);
	cr_assert_eq((uintptr_t)m.data % 64, 0);
	cr_assert_eq(memcmp(m.data, b, size), 0);
	const void *pl;
	size_t psize;
	cr_assert_eq(elide_blob_check(m.data, m.size, MODEL, ELIDE_BLOB_ANY_SIZE, &pl, &psize), ELIDE_OK);
	cr_assert_eq(psize, 100000u);
	elide_blob_unmap(&m);
	cr_assert_null(m.data);
	elide_blob_unmap(&m); /* twice is harmless */

	cr_assert_eq(elide_blob_open(path, MODEL, ELIDE_BLOB_ANY_SIZE, &m, &pl, &psize), ELIDE_OK);
	cr_assert_eq((const unsigned char *)pl, (const unsigned char *)m.data + 64);
	elide_blob_unmap(&m);
	cr_assert_eq(elide_blob_open(path, MODEL + 1, ELIDE_BLOB_ANY_SIZE, &m, &pl, &psize), ELIDE_ERR_BLOB_MODEL);
	cr_assert_null(m.data);

	void *copy = NULL;
	size_t csize = 0;
	cr_assert_eq(elide_blob_read_file(path, &copy, &csize), ELIDE_OK);
	cr_assert_eq(csize, size);
	cr_assert_eq((uintptr_t)copy % 64, 0);
	cr_assert_eq(elide_blob_check(copy, csize, MODEL, ELIDE_BLOB_ANY_SIZE, NULL, NULL), ELIDE_OK);
	free(copy);

	/* truncated file */
	char *tpath = tmp_path("trunc.weights");
	write_file(tpath, b, size - 1000);
	cr_assert_eq(elide_blob_open(tpath, MODEL, ELIDE_BLOB_ANY_SIZE, &m, NULL, NULL), ELIDE_ERR_BLOB_SIZE);
	write_file(tpath, b, 40);
	cr_assert_eq(elide_blob_map(tpath, &m), ELIDE_ERR_BLOB_SIZE);
	/* empty file, missing file, directory */
	write_file(tpath, b, 0);
	cr_assert_eq(elide_blob_map(tpath, &m), ELIDE_ERR_IO);
	unlink(tpath);
	cr_assert_eq(elide_blob_map(tpath, &m), ELIDE_ERR_IO);
	cr_assert_eq(elide_blob_map(P_tmpdir, &m), ELIDE_ERR_IO);
	cr_assert_eq(elide_blob_read_file(tpath, &copy, &csize), ELIDE_ERR_IO);
	cr_assert_eq(elide_blob_map(NULL, &m), ELIDE_ERR_ARG);
	cr_assert_eq(elide_blob_map(path, NULL), ELIDE_ERR_ARG);
	unlink(path);
	free(b);
}

/* A FIFO with no writer: open(2) without O_NONBLOCK waits for a writer forever (the
 * hostile-input campaign found the load hanging); every path is an ELIDE_ERR_IO at once. */
Test(rt_blob, fifo_does_not_block, .timeout = 20)
{
	char *path = tmp_path("fifo.weights");
	unlink(path);
	cr_assert_eq(mkfifo(path, 0600), 0);
	elide_mapping m;
	void *copy;
	size_t csize;
	cr_assert_eq(elide_blob_map(path, &m), ELIDE_ERR_IO);
	cr_assert_eq(elide_blob_open(path, MODEL, ELIDE_BLOB_ANY_SIZE, &m, NULL, NULL), ELIDE_ERR_IO);
	cr_assert_eq(elide_blob_read_file(path, &copy, &csize), ELIDE_ERR_IO);
	unlink(path);
}

Test(rt_blob, open_is_a_private_copy)
{
	/* a file truncated or rewritten after elide_blob_open: the blob stays readable and
	 * unchanged (a mapping would fault with SIGBUS past the new end) */
	size_t size;
	unsigned char *b = make_blob(3 * 4096 + 100, &size);
	char *path = tmp_path("copy.weights");
	write_file(path, b, size);
	elide_mapping m;
	const void *pl;
	size_t psize;
	cr_assert_eq(elide_blob_open(path, MODEL, size - 64, &m, &pl, &psize), ELIDE_OK);
	cr_assert_eq(truncate(path, 0), 0);
	cr_assert_eq(memcmp(pl, b + 64, psize), 0);
	write_file(path, "garbage", 7);
	cr_assert_eq(memcmp(m.data, b, size), 0);
	elide_blob_unmap(&m);
	/* the caller's size is checked before the payload is read */
	write_file(path, b, size);
	cr_assert_eq(elide_blob_open(path, MODEL, size - 63, &m, &pl, &psize), ELIDE_ERR_BLOB_SIZE);
	cr_assert_null(m.data);
	unlink(path);
	free(b);
}

Test(rt_util, sizes)
{
	cr_assert_eq(elide_kv_bytes(256, 6, 48, 0), 2u * 256 * 6 * 48 * 4);
	/* K and V are each padded to 64 bytes, as the compiler lays them out: 3 x 5
	 * floats = 60 bytes -> 64 */
	cr_assert_eq(elide_kv_bytes(3, 1, 5, 0), 128u);
	elide_kv_layout l = elide_kv_layout_of(7, 2, 3, 0);
	cr_assert_eq(l.row_bytes, 24u);
	cr_assert_eq(l.v_offset, 192u); /* 168 -> 192 */
	cr_assert_eq(l.bytes, 384u);
	/* page bounds after V: ceil(7 / 3) = 3 pages x 2 (min, max) x 2 heads x 3 channels
	 * x 2 bytes (bf16) = 72 -> 128 */
	elide_kv_layout lp = elide_kv_layout_of(7, 2, 3, 3);
	cr_assert_eq(lp.v_offset, 192u);
	cr_assert_eq(lp.bounds_offset, 384u);
	cr_assert_eq(lp.bounds_bytes, 128u);
	cr_assert_eq(lp.bytes, 512u);
	cr_assert_eq(elide_kv_bytes(7, 2, 3, 3), 512u);
	/* the M shape's layer at ctx 8192, pages of 16: 512 pages x 12 heads x 2 x 64 x 2
	 * bytes of bounds, a sixteenth of K (a page's bounds: half a row of 16) */
	elide_kv_layout lm = elide_kv_layout_of(8192, 12, 64, 16);
	cr_assert_eq(lm.v_offset, 8192u * 3072);
	cr_assert_eq(lm.bounds_bytes, 512u * 12 * 2 * 64 * 2);
	cr_assert_eq(lm.bounds_bytes * 16, lm.v_offset);
	cr_assert_eq(elide_kv_layout_of(7, 2, 3, -1).bytes, 0u);
	cr_assert_eq(elide_kv_layout_of(7, 0, 3, 0).bytes, 0u);
	cr_assert_eq(elide_kv_layout_of(INT64_MAX, 1 << 19, 1 << 19, 0).bytes, 0u);
	cr_assert_eq(elide_kv_bytes(0, 6, 48, 0), 0u);
	cr_assert_eq(elide_kv_bytes(-1, 6, 48, 0), 0u);
	cr_assert_eq(elide_align_up(0, 64), 0u);
	cr_assert_eq(elide_align_up(1, 64), 64u);
	cr_assert_eq(elide_align_up(64, 64), 64u);
	cr_assert_eq(elide_align_up(65, 64), 128u);
	uint64_t a = elide_now_ns(), b = elide_now_ns();
	cr_assert_geq(b, a);
}

/* The streaming checksum (the compiler's packer writes blobs in pieces) equals the
 * one-shot sum for every split of every length, pieces of 0..70 bytes. */
Test(rt_checksum, streaming_equals_one_shot)
{
	unsigned char buf[257];
	uint64_t rng = 11;
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)elide_rng_next(&rng);
	for (size_t n = 0; n <= sizeof buf; n += 3) {
		uint64_t want = elide_checksum(buf, n);
		for (int trial = 0; trial < 8; trial++) {
			elide_checksum_state s;
			elide_checksum_init(&s);
			for (size_t at = 0; at < n;) {
				size_t k = (size_t)(elide_rng_next(&rng) % 71);
				if (k > n - at)
					k = n - at;
				elide_checksum_update(&s, buf + at, k);
				at += k;
			}
			cr_assert_eq(elide_checksum_final(&s), want, "length %zu trial %d", n, trial);
		}
	}
}
