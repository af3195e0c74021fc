/* randmodel_ir.c - the IR of the random Llama of randmodel.c, built directly with
 * ir_emit (no front end): the same params (HF names), state and entries `step` and
 * `prefill` that rm_elide_source() describes, so tests of the interpreter, the passes
 * and codegen can run before or without the DSL; and rm_write_params, random weights
 * for the params of any module. */
#include "ir/ir.h"
#include "tests/support/randmodel.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct Ctx {
	Module *m;
	Func *f;
	int32_t layer;
	bool seq;  /* prefill: activations are [<=ctx, width] */
	int ctx;
} Ctx;

static Type
act(Ctx *c, int64_t width)
{
	if (!c->seq)
		return ir_type_vec(DT_F32, width);
	Type t = ir_type_mat(DT_F32, c->ctx, width);
	t.dyn0 = true;
	return t;
}

static ValueId
emit(Ctx *c, Opcode code, Type t, const ValueId *args, uint32_t nargs, int64_t i0, int64_t i1,
     int64_t i2, float f0)
{
	ValueId v = ir_emit(c->m, c->f, code, t, args, nargs, (Loc){ 0 });
	Op *op = ir_def(c->f, v);
	op->ia[0] = i0;
	op->ia[1] = i1;
	op->ia[2] = i2;
	op->fa[0] = f0;
	op->layer = c->layer;
	return v;
}

static ValueId
param(Ctx *c, const char *name)
{
	int32_t p = ir_find_param(c->m, name);
	if (p < 0)
		ELIDE_ICE("randmodel_ir: missing param");
	return emit(c, OP_PARAM, c->m->params[p].type, NULL, 0, p, 0, 0, 0);
}

static ValueId
lin(Ctx *c, ValueId x, const char *w)
{
	ValueId wv = param(c, w);
	ValueId a[2] = { x, wv };
	return emit(c, OP_LINEAR, act(c, ir_vtype(c->f, wv).dims[0]), a, 2, 0, 0, 0, 0);
}

static ValueId
bin(Ctx *c, Opcode code, ValueId x, ValueId y)
{
	ValueId a[2] = { x, y };
	return emit(c, code, ir_vtype(c->f, x), a, 2, 0, 0, 0, 0);
}

static ValueId
rms(Ctx *c, ValueId x, const char *w)
{
	ValueId a[2] = { x, param(c, w) };
	return emit(c, OP_RMSNORM, ir_vtype(c->f, x), a, 2, 0, 0, 0, 1e-5f);
}

static void
build_entry(Module *m, const RmConfig *rc, bool prefill)
{
	Ctx c = { .m = m, .layer = -1, .seq = prefill, .ctx = rc->ctx };
	c.f = ir_new_func(m, prefill ? "prefill" : "step", prefill ? FN_PREFILL : FN_STEP, (Loc){ 0 });
	Type tokt = ir_type_scalar(DT_I32);
	if (prefill) {
		tokt = ir_type_vec(DT_I32, rc->ctx);
		tokt.dyn0 = true;
	}
	ir_func_add_arg(m, c.f, prefill ? "tokens" : "token", tokt);
	ir_func_add_arg(m, c.f, "pos", ir_type_scalar(DT_I32));
	c.f->nrets = 1;
	c.f->rets = arena_alloc(&m->arena, sizeof *c.f->rets);
	c.f->rets[0] = ir_type_vec(DT_F32, rc->vocab);
	int hd = rc->dim / rc->heads;
	char n[64];
	ValueId tok = emit(&c, OP_ARG, tokt, NULL, 0, 0, 0, 0, 0);
	ValueId pos = emit(&c, OP_ARG, ir_type_scalar(DT_I32), NULL, 0, 1, 0, 0, 0);
	ValueId a[4] = { param(&c, "emb"), tok };
	ValueId x = emit(&c, OP_EMBED, act(&c, rc->dim), a, 2, 0, 0, 0, 0);
	for (int l = 0; l < rc->layers; l++) {
		c.layer = l;
#define P(s) (snprintf(n, sizeof n, s ".%d", l), n)
		ValueId h = rms(&c, x, P("attn_norm"));
		ValueId q = lin(&c, h, P("wq"));
		ValueId k = lin(&c, h, P("wk"));
		ValueId v = lin(&c, h, P("wv"));
		ValueId ra[2] = { q, pos };
		q = emit(&c, OP_ROPE, ir_vtype(c.f, q), ra, 2, rc->heads, hd, 0, 10000.0f);
		ra[0] = k;
		k = emit(&c, OP_ROPE, ir_vtype(c.f, k), ra, 2, rc->kv_heads, hd, 0, 10000.0f);
		ValueId aa[4] = { q, k, v, pos };
		ValueId att = emit(&c, OP_ATTENTION, ir_vtype(c.f, q), aa, 4, rc->heads, rc->kv_heads, l, 0);
		x = bin(&c, OP_ADD, x, lin(&c, att, P("wo")));
		h = rms(&c, x, P("ffn_norm"));
		ValueId g = lin(&c, h, P("w1"));
		ValueId sa[1] = { g };
		g = emit(&c, OP_SILU, ir_vtype(c.f, g), sa, 1, 0, 0, 0, 0);
		ValueId u = bin(&c, OP_MUL, g, lin(&c, h, P("w3")));
		x = bin(&c, OP_ADD, x, lin(&c, u, P("w2")));
#undef P
	}
	c.layer = -1;
	if (prefill) {
		ValueId ra[1] = { x };
		x = emit(&c, OP_ROW, ir_type_vec(DT_F32, rc->dim), ra, 1, -1, 0, 0, 0);
		c.seq = false;
	}
	x = rms(&c, x, "norm");
	ValueId logits = lin(&c, x, "lm_head");
	emit(&c, OP_RET, ir_type_vec(DT_F32, rc->vocab), &logits, 1, 0, 0, 0, 0);
}

Module *
rm_build_module(const RmConfig *rc, const char *name)
{
	Module *m = ir_new_module(name);
	int hd = rc->dim / rc->heads, kvd = rc->kv_heads * hd;
	ir_config_set(m, "dim", rc->dim);
	ir_config_set(m, "layers", rc->layers);
	ir_config_set(m, "heads", rc->heads);
	ir_config_set(m, "kv_heads", rc->kv_heads);
	ir_config_set(m, "ffn", rc->ffn);
	ir_config_set(m, "vocab", rc->vocab);
	ir_config_set(m, "ctx", rc->ctx);
	ir_config_set(m, "head_dim", hd);
	ir_config_set(m, "kv_dim", kvd);
	m->nlayers = rc->layers;
	Loc nl = { 0 };
	char n[64], s[128];
	ir_add_param(m, "emb", "model.embed_tokens.weight", ir_type_mat(DT_F32, rc->vocab, rc->dim), -1, nl);
	for (int l = 0; l < rc->layers; l++) {
#define ADD(iname, src, t)                                                    \
	(snprintf(n, sizeof n, iname ".%d", l),                               \
	 snprintf(s, sizeof s, "model.layers.%d." src, l), ir_add_param(m, n, s, t, l, nl))
		ADD("attn_norm", "input_layernorm.weight", ir_type_vec(DT_F32, rc->dim));
		ADD("wq", "self_attn.q_proj.weight", ir_type_mat(DT_F32, rc->dim, rc->dim));
		ADD("wk", "self_attn.k_proj.weight", ir_type_mat(DT_F32, kvd, rc->dim));
		ADD("wv", "self_attn.v_proj.weight", ir_type_mat(DT_F32, kvd, rc->dim));
		ADD("wo", "self_attn.o_proj.weight", ir_type_mat(DT_F32, rc->dim, rc->dim));
		ADD("ffn_norm", "post_attention_layernorm.weight", ir_type_vec(DT_F32, rc->dim));
		ADD("w1", "mlp.gate_proj.weight", ir_type_mat(DT_F32, rc->ffn, rc->dim));
		ADD("w3", "mlp.up_proj.weight", ir_type_mat(DT_F32, rc->ffn, rc->dim));
		ADD("w2", "mlp.down_proj.weight", ir_type_mat(DT_F32, rc->dim, rc->ffn));
#undef ADD
		snprintf(n, sizeof n, "kv.%d", l);
		ir_add_state(m, (State){ .name = n, .kind = ST_KVCACHE, .layer = l, .ctx = rc->ctx,
		                         .kv_heads = rc->kv_heads, .head_dim = hd });
	}
	ir_add_param(m, "norm", "model.norm.weight", ir_type_vec(DT_F32, rc->dim), -1, nl);
	ir_add_param(m, "lm_head", "lm_head.weight", ir_type_mat(DT_F32, rc->vocab, rc->dim), -1, nl);
	build_entry(m, rc, false);
	build_entry(m, rc, true);
	return m;
}

bool
rm_write_params(const Module *m, uint64_t seed, const char *path)
{
	RmTensor *t = calloc(m->nparams + 1, sizeof *t);
	RmRng rng = { seed };
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		int64_t n = ir_type_numel(p->type);
		float *data = malloc((size_t)n * sizeof *data);
		for (int64_t k = 0; data && k < n; k++)
			data[k] = rm_rng_uniform(&rng, -0.5f, 0.5f);
		t[i] = (RmTensor){ .name = p->source, .dtype = RM_F32, .rank = p->type.rank, .data = data };
		for (int k = 0; k < p->type.rank; k++)
			t[i].shape[k] = p->type.dims[k];
	}
	bool ok = rm_st_write(t, (int)m->nparams, path);
	for (uint32_t i = 0; i < m->nparams; i++)
		free((void *)t[i].data);
	free(t);
	return ok;
}
