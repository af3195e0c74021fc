/* test_gguf.c - the GGUF reader (ir/gguf.c): the dequantised values of F16, BF16,
 * Q8_0 and Q4_0 tensors equal those make_import_fixtures.py computed; every
 * truncation of a valid file and every single-byte flip of its header give a
 * validated file or a message, never a crash (also under ASan); hand-made hostile
 * headers give messages that name what is wrong. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/slurp.h"

#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/import/"

Test(gguf, dequantised_values)
{
	char err[512] = "";
	GgufFile *f = gguf_open(FIX "quant.gguf", err, sizeof err);
	cr_assert(f, "%s", err);
	const char *names[] = { "f16", "bf16", "q8_0", "q4_0" };
	for (int i = 0; i < 4; i++) {
		char en[32];
		snprintf(en, sizeof en, "%s.expect", names[i]);
		const GgufTensor *t = gguf_find_tensor(f, names[i]), *e = gguf_find_tensor(f, en);
		cr_assert(t && e);
		cr_assert_eq(t->rank, 2);
		cr_assert_eq(t->shape[0], 2);
		cr_assert_eq(t->shape[1], 64);
		float got[128], want[128];
		cr_assert(gguf_read_f32(f, t, got, err, sizeof err), "%s", err);
		cr_assert(gguf_read_f32(f, e, want, err, sizeof err), "%s", err);
		for (int k = 0; k < 128; k++)
			cr_assert_eq(got[k], want[k], "%s[%d]: %g, expected %g", names[i], k, got[k], want[k]);
	}
	gguf_close(f);
}

Test(gguf, metadata)
{
	char err[512] = "";
	GgufFile *f = gguf_open(FIX "sharded.gguf", err, sizeof err);
	cr_assert(f, "%s", err);
	int64_t v;
	double x;
	cr_assert_str_eq(gguf_kv_str(f, "general.architecture"), "llama");
	cr_assert(gguf_kv_int(f, "llama.block_count", &v) && v == 2);
	cr_assert(gguf_kv_float(f, "llama.rope.freq_base", &x) && x == 10000.0);
	const GgufKV *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
	cr_assert(tok && tok->type == GGUF_V_ARRAY && tok->arr_type == GGUF_V_STRING && tok->arr_n == 48);
	const GgufTensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
	cr_assert(t && t->shape[0] == 32 && t->shape[1] == 48, "shapes are outermost first");
	gguf_close(f);
}

static uint8_t *
fixture(const char *name, size_t *n)
{
	char p[512];
	snprintf(p, sizeof p, FIX "%s", name);
	uint8_t *b = ts_slurp(p, n);
	cr_assert(b);
	return b;
}

/* opened, or a message; an opened file's tensors all read */
static bool
open_ok(const uint8_t *b, size_t n)
{
	char err[512] = "";
	GgufFile *f = gguf_open_mem(b, n, err, sizeof err);
	cr_assert((f != NULL) == (err[0] == '\0'), "a result and a message: '%s'", err);
	if (!f)
		return false;
	for (uint32_t i = 0; i < f->ntensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		if (t->numel > (1u << 20))
			continue;
		float *dst = malloc(t->numel * sizeof *dst);
		char e2[512];
		bool known = t->type == GGML_F32 || t->type == GGML_F16 || t->type == GGML_BF16 || t->type == GGML_Q8_0 ||
		             t->type == GGML_Q4_0;
		cr_assert_eq(gguf_read_f32(f, t, dst, e2, sizeof e2), known);
		free(dst);
	}
	gguf_close(f);
	return true;
}

Test(gguf, every_truncation_fails_cleanly)
{
	const char *files[] = { "quant.gguf", "sharded.gguf" };
	for (int k = 0; k < 2; k++) {
		size_t n;
		uint8_t *b = fixture(files[k], &n);
		cr_assert(open_ok(b, n));
		for (size_t len = 0; len < n; len += (len < 4096 ? 1 : 97))
			cr_assert(!open_ok(b, len), "%s truncated to %zu bytes opened", files[k], len);
		free(b);
	}
}

Test(gguf, byte_flips_of_the_header)
{
	size_t n;
	uint8_t *b = fixture("sharded.gguf", &n);
	size_t hdr = n < 4096 ? n : 4096; /* metadata and tensor infos */
	int opened = 0, refused = 0;
	for (size_t i = 0; i < hdr; i++)
		for (int bit = 0; bit < 8; bit += 3) {
			b[i] ^= (uint8_t)(1u << bit);
			open_ok(b, n) ? opened++ : refused++;
			b[i] ^= (uint8_t)(1u << bit);
		}
	cr_log_info("byte flips: %d opened, %d refused", opened, refused);
	cr_assert(refused > 0 && opened > 0);
	free(b);
}

/* ---- hand-made headers ---- */

typedef struct Buf {
	uint8_t b[1024];
	size_t n;
} Buf;

static void
put(Buf *b, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		b->b[b->n++] = (uint8_t)(v >> (8 * i));
}

static void
put_str(Buf *b, const char *s, size_t len)
{
	put(b, len, 8);
	memcpy(b->b + b->n, s, len);
	b->n += len;
}

static void
expect_err(const Buf *b, const char *want)
{
	char err[512] = "";
	GgufFile *f = gguf_open_mem(b->b, b->n, err, sizeof err);
	cr_assert_null(f);
	cr_assert(strstr(err, want), "message '%s' lacks '%s'", err, want);
}

/* header with nt tensors and nkv key-values to follow */
static Buf
header(uint64_t nt, uint64_t nkv)
{
	Buf b = { .n = 0 };
	memcpy(b.b, "GGUF", 4);
	b.n = 4;
	put(&b, 3, 4);
	put(&b, nt, 8);
	put(&b, nkv, 8);
	return b;
}

static void
tensor_info(Buf *b, const char *name, uint32_t rank, const uint64_t *ne, uint32_t type, uint64_t off)
{
	put_str(b, name, strlen(name));
	put(b, rank, 4);
	for (uint32_t i = 0; i < rank; i++)
		put(b, ne[i], 8);
	put(b, type, 4);
	put(b, off, 8);
}

static void
pad(Buf *b, size_t data)
{
	while (b->n % 32)
		b->b[b->n++] = 0;
	memset(b->b + b->n, 0, data);
	b->n += data;
}

Test(gguf, hostile_headers)
{
	Buf b = header(1u << 30, 0);
	expect_err(&b, "tensors cannot fit");
	b = header(0, UINT64_MAX);
	expect_err(&b, "metadata entries cannot fit");
	b = header(0, 1);
	put(&b, UINT64_MAX, 8); /* key length */
	put(&b, 0, 8);
	expect_err(&b, "a metadata key of 18446744073709551615 bytes, 8 left");
	b = header(0, 1);
	put_str(&b, "a\0b", 3);
	put(&b, GGUF_V_U32, 4);
	put(&b, 1, 4);
	expect_err(&b, "contains a NUL byte");
	b = header(0, 1);
	put_str(&b, "k", 1);
	put(&b, GGUF_V_ARRAY, 4);
	put(&b, GGUF_V_ARRAY, 4);
	put(&b, 1, 8);
	expect_err(&b, "array of arrays");
	b = header(0, 1);
	put_str(&b, "k", 1);
	put(&b, 99, 4);
	expect_err(&b, "key 'k': unknown value type 99");
	b = header(0, 1);
	put_str(&b, "general.alignment", 17);
	put(&b, GGUF_V_U32, 4);
	put(&b, 24, 4);
	expect_err(&b, "general.alignment must be a u32 power of two");
	uint64_t ne[2] = { 32, 2 };
	b = header(1, 0);
	tensor_info(&b, "w", 2, ne, 77, 0);
	expect_err(&b, "tensor 'w': unknown ggml type 77");
	uint64_t ne5[5] = { 32, 2, 1, 1, 1 }; /* a rank past the reader's limit, every extent written */
	b = header(1, 0);
	tensor_info(&b, "w", 5, ne5, GGML_F32, 0);
	expect_err(&b, "tensor 'w': rank 5");
	uint64_t odd[2] = { 33, 2 };
	b = header(1, 0);
	tensor_info(&b, "w", 2, odd, GGML_Q8_0, 0);
	expect_err(&b, "not a multiple of the Q8_0 block of 32");
	uint64_t big[2] = { 1ull << 40, 1ull << 20 };
	b = header(1, 0);
	tensor_info(&b, "w", 2, big, GGML_F32, 0);
	expect_err(&b, "too large");
	b = header(1, 0);
	tensor_info(&b, "w", 2, ne, GGML_F32, 16);
	pad(&b, 300);
	expect_err(&b, "offset 16 is not a multiple of the alignment 32");
	b = header(1, 0);
	tensor_info(&b, "w", 2, ne, GGML_F32, 0);
	pad(&b, 255);
	expect_err(&b, "tensor 'w': bytes [0, 256) lie outside the data section of 255 bytes");
	b = header(2, 0);
	tensor_info(&b, "w", 2, ne, GGML_F32, 0);
	tensor_info(&b, "w", 2, ne, GGML_F32, 256);
	pad(&b, 512);
	expect_err(&b, "tensor 'w' appears twice");
	b = header(2, 0);
	tensor_info(&b, "w", 2, ne, GGML_F32, 0);
	tensor_info(&b, "v", 2, ne, GGML_F32, 128);
	pad(&b, 512);
	expect_err(&b, "overlap");
	b = header(0, 0);
	b.b[4] = 1;
	expect_err(&b, "GGUF version 1 is not supported");
	b = header(0, 0);
	b.b[0] = 'X';
	expect_err(&b, "not a GGUF file");
}
