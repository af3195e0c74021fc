/* test_randmodel.c - the test-support random model writer: determinism, the half
 * precision conversions, the file layout and the zeroing options. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

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
	uint8_t *ba = ts_slurp(a, &na), *bb = ts_slurp(b, &nb);
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
	bb = ts_slurp(b, &nb);
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

/* Zeroed units are inert: zeroing every FFN neuron and every head of a layer, or
 * every KV group, gives bit-identical logits to zeroing the whole layer. */
#include "ir/ir.h"

static void
logits_of(const RmConfig *c, float *out)
{
	const char *path = ELIDE_BINARY_DIR "/rm_zero.safetensors";
	cr_assert(rm_write_model(c, path));
	Module *m = rm_build_module(c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d));
	InterpState *s = interp_new(m);
	char err[256];
	const int32_t toks[3] = { 5, 9, 200 };
	for (int t = 0; t < 3; t++)
		cr_assert(interp_run(s, "step", &toks[t], 1, t, out + t * c->vocab, err, sizeof err), "%s", err);
	interp_free(s);
	ir_free_module(m);
	remove(path);
}

Test(randmodel, zeroed_units_are_inert)
{
	RmConfig c = rm_default_config();
	c.layers = 3;
	size_t nl = (size_t)3 * c.vocab;
	float *dense = malloc(nl * sizeof(float)), *layer = malloc(nl * sizeof(float));
	float *units = malloc(nl * sizeof(float)), *kv = malloc(nl * sizeof(float));
	logits_of(&c, dense);
	bool zl[3] = { false, true, false };
	c.zero_layer = zl;
	logits_of(&c, layer);
	c.zero_layer = NULL;
	bool *zf = calloc((size_t)c.layers * c.ffn, 1), *zh = calloc((size_t)c.layers * c.heads, 1);
	bool *zk = calloc((size_t)c.layers * c.kv_heads, 1);
	for (int j = 0; j < c.ffn; j++)
		zf[1 * c.ffn + j] = true;
	for (int h = 0; h < c.heads; h++)
		zh[1 * c.heads + h] = true;
	for (int g = 0; g < c.kv_heads; g++)
		zk[1 * c.kv_heads + g] = true;
	c.zero_ffn = zf;
	c.zero_head = zh;
	logits_of(&c, units);
	c.zero_head = NULL;
	c.zero_kv = zk;
	logits_of(&c, kv);
	cr_expect(memcmp(layer, units, nl * sizeof(float)) == 0, "all neurons and heads zero != layer zero");
	cr_expect(memcmp(layer, kv, nl * sizeof(float)) == 0, "all neurons and kv groups zero != layer zero");
	cr_expect(memcmp(layer, dense, nl * sizeof(float)) != 0, "zeroing a layer must change the logits");
	free(dense);
	free(layer);
	free(units);
	free(kv);
	free(zf);
	free(zh);
	free(zk);
}

/* The IR built without the front end agrees with the shared type inference. */
Test(randmodel, ir_types_agree_with_inference)
{
	RmConfig c = rm_default_config();
	Module *m = rm_build_module(&c, "llama");
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		Func *f = m->funcs[i];
		for (uint32_t k = 0; k < f->nops; k++) {
			const Op *op = &f->ops[k];
			if ((ir_op_flags[op->code] & OPF_LEAF) || op->code == OP_RET)
				continue;
			Type t;
			char err[256] = "", a[64], b[64];
			cr_assert(ir_infer_type(m, f, op, &t, err, sizeof err), "%s op %u: %s", f->name, k, err);
			cr_expect(ir_type_eq(t, f->vals[op->dst].type), "%s op %u (%s): inferred %s, built %s", f->name, k,
			          ir_op_names[op->code], ir_type_str(t, a, sizeof a),
			          ir_type_str(f->vals[op->dst].type, b, sizeof b));
		}
	}
	ir_free_module(m);
}
