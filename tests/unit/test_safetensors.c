/* test_safetensors.c - the safetensors reader: dtype conversions, every validation
 * error, every truncation of a valid file and 1,000 seeded random byte flips of its
 * header (only clean errors, also under ASan), ir_load_params' diagnostics, and a
 * file truncated while it is mapped (a clean error, not SIGBUS). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ir/ir.h"
#include "tests/support/randmodel.h"

static const float vals[6] = { 1.0f, -2.5f, 0.15625f, 65504.0f, -0.0f, 3.0e-6f };

/* A valid file with one tensor of each dtype. */
static uint8_t *
sample(size_t *size)
{
	RmTensor t[] = {
		{ "a.f32", RM_F32, 2, { 2, 3 }, vals },
		{ "b.f16", RM_F16, 1, { 6 }, vals },
		{ "c.bf16", RM_BF16, 2, { 3, 2 }, vals },
		{ "d.i32", RM_I32, 1, { 2 }, (const float[]){ -7, 123456 } },
		{ "e.empty", RM_F32, 2, { 0, 4 }, NULL },
	};
	return rm_st_build(t, 5, size);
}

/* Builds a file from a literal header and `data` bytes of payload. */
static StFile *
from_header(const char *json, size_t data, char *err, size_t nerr)
{
	size_t hl = strlen(json), n = 8 + hl + data;
	uint8_t *b = calloc(1, n);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, json, hl);
	StFile *f = st_open_mem(b, n, err, nerr);
	free(b);
	return f;
}

static void
expect_error(const char *json, size_t data, const char *needle)
{
	char err[512] = "";
	StFile *f = from_header(json, data, err, sizeof err);
	cr_expect_null(f, "accepted: %s", json);
	st_close(f);
	cr_expect(strstr(err, needle), "error for %s is '%s', expected it to mention '%s'", json, err, needle);
}

Test(safetensors, reads_every_dtype)
{
	size_t n;
	uint8_t *b = sample(&n);
	char err[256];
	StFile *f = st_open_mem(b, n, err, sizeof err);
	cr_assert(f, "%s", err);
	cr_assert_eq(f->ntensors, 5, "__metadata__ is not a tensor");
	float out[6];
	const StTensor *t = st_find(f, "a.f32");
	cr_assert(t && t->dtype == DT_F32 && t->rank == 2 && t->shape[0] == 2 && t->shape[1] == 3);
	cr_assert(st_read_f32(f, t, out, err, sizeof err));
	cr_expect(memcmp(out, vals, sizeof vals) == 0);
	t = st_find(f, "b.f16");
	cr_assert(t && t->dtype == DT_F16);
	cr_assert(st_read_f32(f, t, out, err, sizeof err));
	const float f16want[6] = { 1.0f, -2.5f, 0.15625f, 65504.0f, -0.0f, 2.98023224e-6f }; /* 50 * 2^-24 */
	for (int i = 0; i < 6; i++)
		cr_expect_eq(out[i], f16want[i], "f16 %d: %g != %g", i, out[i], f16want[i]);
	cr_expect(signbit(out[4]));
	t = st_find(f, "c.bf16");
	cr_assert(t && t->dtype == DT_BF16);
	cr_assert(st_read_f32(f, t, out, err, sizeof err));
	const float bfwant[6] = { 1.0f, -2.5f, 0.15625f, 65536.0f, -0.0f, 2.9951334e-6f };
	for (int i = 0; i < 6; i++)
		cr_expect_eq(out[i], bfwant[i], "bf16 %d: %.9g != %.9g", i, out[i], bfwant[i]);
	t = st_find(f, "d.i32");
	cr_assert(t && t->dtype == DT_I32);
	cr_assert(st_read_f32(f, t, out, err, sizeof err));
	cr_expect(out[0] == -7.0f && out[1] == 123456.0f);
	cr_expect_null(st_find(f, "missing"));
	cr_expect_null(st_find(f, "__metadata__"));
	st_close(f);
	free(b);
}

Test(safetensors, clean_errors)
{
	expect_error("[1, 2]", 0, "not a JSON object");
	expect_error("\"x\"", 0, "not a JSON object");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2]", 8, "not valid JSON");
	expect_error("{} x", 0, "trailing");
	expect_error("{\"a\": 3}", 0, "expected an object");
	expect_error("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "'dtype'");
	expect_error("{\"a\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8, "unsupported dtype 'F64'");
	expect_error("{\"a\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8, "unknown dtype 'Q4'");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "'shape'");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4, "shape entry 0");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4, "shape entry 0");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4, "rank 5");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "'data_offsets'");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 4, "'data_offsets'");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4, "reversed");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4, "out of range");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "need 12");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8,
	             "need more than");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
	             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
	             12, "overlap");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	             " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
	             8, "declared twice");
	/* accepted: empty object, metadata of any shape, empty tensors sharing an offset */
	char err[256];
	StFile *f = from_header("{}", 0, err, sizeof err);
	cr_expect(f, "%s", err);
	st_close(f);
	f = from_header("{\"__metadata__\": {\"k\": \"v\"}, \"z\": {\"dtype\": \"I32\", \"shape\": [0], "
	                "\"data_offsets\": [0, 0]}, \"y\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
	                4, err, sizeof err);
	cr_expect(f, "%s", err);
	st_close(f);
}

/* The data section is covered by the tensors, without holes and with nothing after
 * the last one (the format's rule).  The hostile-input campaign found a header length
 * 4 bytes short accepted: the JSON still parsed (its last bytes were padding spaces),
 * every tensor moved 4 bytes and the model ran with other weights. */
Test(safetensors, tensors_cover_the_data_section)
{
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 8,
	             "4 bytes after the last tensor");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8,
	             "bytes [0, 4] of the data section belong to no tensor");
	expect_error("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
	             " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
	             12, "bytes [4, 8] of the data section belong to no tensor (before 'b')");
	/* a good file whose header ends in 4 spaces of padding, its length 4 bytes short */
	const char *json = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}    ";
	size_t hl = strlen(json), n = 8 + hl + 4;
	uint8_t *b = calloc(1, n);
	memcpy(b + 8, json, hl);
	char err[512] = "";
	for (int short_by = 0; short_by <= 4; short_by += 4) {
		for (int i = 0; i < 8; i++)
			b[i] = (uint8_t)((uint64_t)(hl - (size_t)short_by) >> (8 * i));
		StFile *f = st_open_mem(b, n, err, sizeof err);
		if (short_by == 0)
			cr_expect(f, "%s", err);
		else
			cr_expect_null(f, "a header length short of its padding was accepted");
		st_close(f);
	}
	cr_expect(strstr(err, "4 bytes after the last tensor"), "%s", err);
	free(b);
}

Test(safetensors, header_length_checks)
{
	char err[256] = "";
	uint8_t b[16] = { 0 };
	cr_expect_null(st_open_mem(b, 5, err, sizeof err));
	cr_expect(strstr(err, "too short"), "%s", err);
	uint64_t big = (200ull << 20);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(big >> (8 * i));
	cr_expect_null(st_open_mem(b, 16, err, sizeof err));
	cr_expect(strstr(err, "header too large"), "%s", err);
	memset(b, 0xff, 8);
	cr_expect_null(st_open_mem(b, 16, err, sizeof err));
	cr_expect(strstr(err, "header too large"), "%s", err);
	memset(b, 0, 8);
	b[0] = 9;
	cr_expect_null(st_open_mem(b, 16, err, sizeof err));
	cr_expect(strstr(err, "exceeds"), "%s", err);
	cr_expect_null(st_open(ELIDE_BINARY_DIR "/no/such/file.safetensors", err, sizeof err));
	cr_expect(strstr(err, "cannot open"), "%s", err);
}

Test(safetensors, every_truncation_is_a_clean_error)
{
	size_t n;
	uint8_t *b = sample(&n);
	char err[256];
	for (size_t k = 0; k < n; k++) {
		err[0] = 0;
		StFile *f = st_open_mem(b, k, err, sizeof err);
		cr_assert_null(f, "truncation to %zu of %zu bytes accepted", k, n);
		cr_assert(err[0], "truncation to %zu gave no message", k);
	}
	StFile *f = st_open_mem(b, n, err, sizeof err);
	cr_assert(f, "%s", err);
	st_close(f);
	free(b);
}

Test(safetensors, random_header_flips_are_clean)
{
	size_t n;
	uint8_t *b = sample(&n);
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)b[i] << (8 * i);
	RmRng rng = { 12345 };
	uint8_t *c = malloc(n);
	int accepted = 0, rejected = 0;
	float *tmp = malloc(64 * sizeof *tmp);
	for (int trial = 0; trial < 1000; trial++) {
		memcpy(c, b, n);
		int flips = 1 + (int)(rm_rng_next(&rng) % 4);
		for (int k = 0; k < flips; k++) {
			size_t at = (size_t)(rm_rng_next(&rng) % (8 + hl));
			c[at] ^= (uint8_t)(1u << (rm_rng_next(&rng) % 8));
			if (rm_rng_next(&rng) % 4 == 0) /* sometimes a whole random byte */
				c[at] = (uint8_t)rm_rng_next(&rng);
		}
		char err[256] = "";
		StFile *f = st_open_mem(c, n, err, sizeof err);
		if (!f) {
			cr_assert(err[0], "trial %d: rejected without a message", trial);
			rejected++;
			continue;
		}
		accepted++;
		/* whatever was accepted must be readable in bounds */
		for (uint32_t i = 0; i < f->ntensors; i++) {
			const StTensor *t = &f->tensors[i];
			cr_assert(t->end <= f->size - f->data_off);
			size_t cnt = (size_t)(t->end - t->begin) / (ir_dtype_size(t->dtype) ? ir_dtype_size(t->dtype) : 1);
			tmp = realloc(tmp, (cnt + 1) * sizeof *tmp);
			st_read_f32(f, t, tmp, err, sizeof err);
		}
		st_close(f);
	}
	cr_expect(rejected > 500, "only %d of 1000 flipped headers rejected", rejected);
	cr_log_info("random flips: %d accepted, %d rejected", accepted, rejected);
	free(tmp);
	free(c);
	free(b);
}

/* ir_load_params: diagnostics at the param's location */
static char *
load_with(Module *m, const char *path, bool *ok)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	Diag d;
	diag_init(&d, out);
	*ok = ir_load_params(m, path, &d);
	fclose(out);
	return buf;
}

Test(safetensors, load_params_reports_at_param_location)
{
	const char *path = ELIDE_BINARY_DIR "/st_load.safetensors";
	RmTensor t[] = {
		{ "w", RM_BF16, 2, { 2, 3 }, vals },
		{ "idx", RM_I32, 1, { 2 }, (const float[]){ 1, 2 } },
		{ "v", RM_F32, 1, { 6 }, vals },
	};
	cr_assert(rm_st_write(t, 3, path));
	Module *m = ir_new_module("t");
	ir_add_param(m, "w", "w", ir_type_mat(DT_F32, 2, 3), -1, (Loc){ "m.elide", 3, 5, 0 });
	ir_add_param(m, "v", "v", ir_type_vec(DT_F32, 6), -1, (Loc){ "m.elide", 4, 5, 0 });
	bool ok;
	char *msg = load_with(m, path, &ok);
	cr_assert(ok, "%s", msg);
	free(msg);
	cr_expect_eq(m->params[0].data[1], -2.5f);
	cr_expect_eq(m->params[1].data[5], 3.0e-6f);
	cr_expect_eq(m->params[1].hash, hash_data(vals, sizeof vals, 0));
	cr_expect_neq(m->params[0].hash, 0);
	ir_free_module(m);

	m = ir_new_module("t");
	ir_add_param(m, "w", "w", ir_type_mat(DT_F32, 3, 2), -1, (Loc){ "m.elide", 3, 5, 0 });
	ir_add_param(m, "i", "idx", ir_type_vec(DT_F32, 2), -1, (Loc){ "m.elide", 4, 7, 0 });
	ir_add_param(m, "g", "gone", ir_type_vec(DT_F32, 2), -1, (Loc){ "m.elide", 5, 9, 0 });
	msg = load_with(m, path, &ok);
	cr_expect_not(ok);
	cr_expect(strstr(msg, "m.elide:3:5: error: tensor 'w' in"), "%s", msg);
	cr_expect(strstr(msg, "has shape [2, 3], but 'w' is declared f32[3, 2]"), "%s", msg);
	cr_expect(strstr(msg, "m.elide:4:7: error: tensor 'idx' in"), "%s", msg);
	cr_expect(strstr(msg, "has dtype i32, expected F32, F16 or BF16"), "%s", msg);
	cr_expect(strstr(msg, "m.elide:5:9: error: tensor 'gone' not found"), "%s", msg);
	cr_expect_null(m->params[0].data);
	free(msg);

	msg = load_with(m, ELIDE_BINARY_DIR "/missing.safetensors", &ok);
	cr_expect_not(ok);
	cr_expect(strstr(msg, "missing.safetensors: error: cannot open"), "%s", msg);
	free(msg);
	ir_free_module(m);
	remove(path);
}

/* A file of two f32 tensors of 4096 elements each (16 KiB apiece, several pages). */
static const char *
write_big(const char *name)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s_%ld.safetensors", ELIDE_BINARY_DIR, name, (long)getpid());
	static float big[4096];
	for (int i = 0; i < 4096; i++)
		big[i] = (float)i;
	RmTensor t[] = { { "a", RM_F32, 1, { 4096 }, big }, { "b", RM_F32, 2, { 64, 64 }, big } };
	cr_assert(rm_st_write(t, 2, path));
	return path;
}

/* A file truncated while it is mapped (another program rewriting it): the reads past
 * its new end fail with a message, never SIGBUS; what is still there reads. */
Test(safetensors, file_shrinking_under_the_mapping_is_a_clean_error)
{
	const char *path = write_big("st_shrink");
	char err[512] = "";
	StFile *f = st_open(path, err, sizeof err);
	cr_assert(f, "%s", err);
	cr_assert(f->mapped);
	size_t size = f->size;
	const StTensor *a = st_find(f, "a"), *b = st_find(f, "b");
	cr_assert(a && b);
	const StTensor *first = a->begin < b->begin ? a : b, *second = a->begin < b->begin ? b : a;
	/* cut the file a page past the end of the first tensor: the second faults */
	long pg = sysconf(_SC_PAGESIZE);
	off_t cut = (off_t)(((f->data_off + first->end) / (size_t)pg + 1) * (size_t)pg);
	cr_assert_lt((uint64_t)cut, f->data_off + second->begin + (uint64_t)pg, "the second tensor spans pages past the cut");
	cr_assert_eq(truncate(path, cut), 0);
	static float out[4096];
	cr_expect(st_read_f32(f, first, out, err, sizeof err), "%s", err);
	cr_expect_eq(out[4095], 4095.0f);
	err[0] = 0;
	cr_expect_not(st_read_f32(f, second, out, err, sizeof err), "a read past the end succeeded");
	char want[128];
	snprintf(want, sizeof want, "' shrank from %zu bytes to %lld bytes while it was read", size, (long long)cut);
	cr_expect(strstr(err, want), "%s", err);
	cr_expect(strstr(err, "tensor '"), "%s", err);
	/* emptied: every read fails, the guard holds for the next read too */
	cr_assert_eq(truncate(path, 0), 0);
	cr_expect_not(st_read_f32(f, first, out, err, sizeof err));
	cr_expect(strstr(err, "to 0 bytes"), "%s", err);
	st_close(f);
	remove(path);
}

static void
truncate_to_zero(const char *path)
{
	cr_assert_eq(truncate(path, 0), 0);
}

/* Truncated between the mapping and the header's read (the hook): st_open fails
 * with a message, and ir_load_params reports it at the file. */
Test(safetensors, file_shrinking_before_the_header_is_read_is_a_clean_error)
{
	const char *path = write_big("st_shrink_head");
	char err[512] = "";
	st_test_after_map = truncate_to_zero;
	cr_expect_null(st_open(path, err, sizeof err));
	cr_expect(strstr(err, "cannot read the header: '"), "%s", err);
	cr_expect(strstr(err, "shrank from"), "%s", err);
	path = write_big("st_shrink_head");
	Module *m = ir_new_module("t");
	ir_add_param(m, "a", "a", ir_type_vec(DT_F32, 4096), -1, (Loc){ "m.elide", 3, 5, 0 });
	bool ok;
	char *msg = load_with(m, path, &ok);
	st_test_after_map = NULL;
	cr_expect_not(ok);
	cr_expect(strstr(msg, "error: cannot read the header: '"), "%s", msg);
	free(msg);
	ir_free_module(m);
	remove(path);
}

/* A SIGBUS outside the reader's guarded reads still kills: the guard's handler,
 * installed by a read, passes it on (to the default action, or to the sanitizer's
 * handler, which reports and exits non-zero).  The fault runs in a child. */
Test(safetensors, sigbus_outside_the_reader_still_kills)
{
	const char *path = write_big("st_bus");
	char err[512] = "";
	StFile *f = st_open(path, err, sizeof err);
	cr_assert(f, "%s", err);
	static float out[4096];
	cr_assert(st_read_f32(f, st_find(f, "a"), out, err, sizeof err), "%s", err); /* installs the handler */
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	volatile const uint8_t *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq((void *)p, MAP_FAILED);
	close(fd);
	cr_assert_eq(truncate(path, 0), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		(void)p[f->size - 1];
		_exit(0); /* the read did not fault: the parent fails */
	}
	int status = 0;
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_expect((WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS) || (WIFEXITED(status) && WEXITSTATUS(status) != 0),
	          "the child survived a read past the end (status 0x%x)", status);
	st_close(f);
	remove(path);
}
