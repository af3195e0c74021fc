/* test_randmodel.c - the test-support random model writer: determinism, the half
 * precision conversions, the file layout and the zeroing options. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/randmodel.h"

static uint8_t *
read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	cr_assert(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*n);
	cr_assert(fread(b, 1, *n, f) == *n);
	fclose(f);
	return b;
}

Test(randmodel, half_conversions)
{
	cr_expect_eq(rm_f32_to_f16(1.0f), 0x3c00);
	cr_expect_eq(rm_f32_to_f16(-2.0f), 0xc000);
	cr_expect_eq(rm_f32_to_f16(0.5f), 0x3800);
	cr_expect_eq(rm_f32_to_f16(65504.0f), 0x7bff);
	cr_expect_eq(rm_f32_to_f16(1e6f), 0x7c00);
	cr_expect_eq(rm_f32_to_f16(5.9604645e-8f), 0x0001); /* smallest subnormal */
	cr_expect_eq(rm_f32_to_f16(0.0f), 0x0000);
	cr_expect_eq(rm_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie: to even */
	cr_expect_eq(rm_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); /* tie: to even */
	cr_expect_eq(rm_f32_to_bf16(1.0f), 0x3f80);
	cr_expect_eq(rm_f32_to_bf16(-3.0f), 0xc040);
	cr_expect_eq(rm_f32_to_bf16(1.00390625f), 0x3f80); /* tie: to even */
	cr_expect_eq(rm_f32_to_bf16(1.01171875f), 0x3f82); /* tie: to even (up) */
}

Test(randmodel, deterministic_and_sized)
{
	RmConfig c = rm_default_config();
	const char *a = ELIDE_BINARY_DIR "/rm_a.safetensors", *b = ELIDE_BINARY_DIR "/rm_b.safetensors";
	cr_assert(rm_write_model(&c, a));
	cr_assert(rm_write_model(&c, b));
	size_t na, nb;
	uint8_t *ba = read_all(a, &na), *bb = read_all(b, &nb);
	cr_assert_eq(na, nb);
	cr_assert(memcmp(ba, bb, na) == 0, "same seed must give the same file");
	uint64_t hl = 0;
	for (int i = 0; i < 8; i++)
		hl |= (uint64_t)ba[i] << (8 * i);
	cr_assert_eq(hl % 8, 0);
	int hd = c.dim / c.heads;
	size_t params = (size_t)c.vocab * c.dim * 2 + c.dim +
	                (size_t)c.layers * (2 * c.dim + 2 * (size_t)c.dim * c.dim +
	                                    2 * (size_t)c.kv_heads * hd * c.dim + 3 * (size_t)c.ffn * c.dim);
	cr_assert_eq(na, 8 + hl + 4 * params);
	cr_assert(strstr((char *)ba + 8, "\"model.layers.1.mlp.down_proj.weight\""));
	c.seed = 2;
	cr_assert(rm_write_model(&c, b));
	free(bb);
	bb = read_all(b, &nb);
	cr_assert(memcmp(ba, bb, na) != 0, "another seed must give other weights");
	free(ba);
	free(bb);
	remove(a);
	remove(b);
}

Test(randmodel, source_mentions_config)
{
	RmConfig c = rm_default_config();
	char *s = rm_elide_source(&c, "llama");
	cr_assert(strstr(s, "model llama {"));
	cr_assert(strstr(s, "ffn = 172"));
	cr_assert(strstr(s, "kv_dim = 32"));
	cr_assert(strstr(s, "entry prefill(tokens: i32[<=ctx], pos: i32)"));
	free(s);
}
