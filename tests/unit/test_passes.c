/* test_passes.c - the first passes on whole random models: a model padded with
 * redundant work (duplicated ops and params, x * 1 through a splat constant, dead
 * ops) comes back from shape-infer, const-fold, cse and dce as exactly the original
 * text, and the interpreter gives bit-identical logits before and after; the
 * default pipeline leaves a clean model unchanged; pass_rebuild_func renumbers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/support/randmodel.h"

static char weights[64];

static void
write_weights(const RmConfig *c)
{
	snprintf(weights, sizeof weights, "/tmp/elide_test_passes_%ld.safetensors", (long)getpid());
	cr_assert(rm_write_model(c, weights));
}

static RmConfig
config(void)
{
	RmConfig c = rm_default_config();
	c.seed = 7;
	return c;
}

/* Rebuilds every entry of m with redundant work after each pure op:
 *   v' = the same op again (cse), k = const 1.0 : type(v), w = mul v', k (const-fold),
 *   silu w (dce); later uses of v read w.  Bounded (dyn0) values get v' and a dead
 *   silu of it only, since constants have static shapes. */
static void
pad(Module *m)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		uint32_t nops = f->nops, nvals = f->nvals;
		Op *ops = malloc(nops * sizeof *ops);
		memcpy(ops, f->ops, nops * sizeof *ops);
		Type *types = malloc(nvals * sizeof *types);
		for (uint32_t v = 0; v < nvals; v++) {
			types[v] = f->vals[v].type;
			free(f->vals[v].uses);
		}
		ValueId *map = malloc(nvals * sizeof *map);
		f->nops = f->nvals = 0;
		for (uint32_t i = 0; i < nops; i++) {
			Op op = ops[i];
			for (uint32_t a = 0; a < op.nargs; a++)
				op.args[a] = map[op.args[a]];
			Type t = types[op.dst];
			ValueId v = ir_emit(m, f, op.code, t, op.args, op.nargs, op.loc);
			Op *o = ir_def(f, v);
			memcpy(o->ia, op.ia, sizeof o->ia);
			memcpy(o->fa, op.fa, sizeof o->fa);
			o->layer = op.layer;
			map[ops[i].dst] = v;
			bool pure = (ir_op_flags[op.code] & OPF_PURE) && op.code != OP_CONST;
			if (!pure || t.dtype != DT_F32)
				continue;
			ValueId dup = ir_emit(m, f, op.code, t, op.args, op.nargs, op.loc);
			*ir_def(f, dup) = *ir_def(f, v);
			ir_def(f, dup)->dst = dup;
			if (t.dyn0) { /* constants are static: no x * 1 here, only a dead user */
				ValueId dead = ir_emit(m, f, OP_SILU, t, &dup, 1, op.loc);
				ir_def(f, dead)->layer = op.layer;
				map[ops[i].dst] = dup;
				continue;
			}
			ValueId k = ir_emit(m, f, OP_CONST, t, NULL, 0, op.loc);
			ir_def(f, k)->fa[0] = 1.0f;
			ir_def(f, k)->layer = op.layer;
			ValueId mw[2] = { dup, k };
			ValueId w = ir_emit(m, f, OP_MUL, t, mw, 2, op.loc);
			ir_def(f, w)->layer = op.layer;
			ValueId dead = ir_emit(m, f, OP_SILU, t, &w, 1, op.loc);
			ir_def(f, dead)->layer = op.layer;
			map[ops[i].dst] = w;
		}
		free(ops);
		free(types);
		free(map);
	}
}

/* Logits of step over tokens and of prefill over all of them. */
static void
run(const Module *m, float *step_out, float *prefill_out, int vocab)
{
	static const int32_t tokens[] = { 1, 17, 42, 200, 3 };
	char err[256];
	InterpState *s = interp_new(m);
	for (int t = 0; t < 5; t++)
		cr_assert(interp_run(s, "step", &tokens[t], 1, t, step_out + t * vocab, err, sizeof err), "%s", err);
	interp_reset(s);
	cr_assert(interp_run(s, "prefill", tokens, 5, 0, prefill_out, err, sizeof err), "%s", err);
	interp_free(s);
}

Test(passes, padded_model_comes_back_exactly)
{
	RmConfig c = config();
	write_weights(&c);
	Diag d;
	diag_init(&d, stderr);
	Module *m = rm_build_module(&c, "pad");
	cr_assert(ir_load_params(m, weights, &d));
	Module *p = ir_clone_module(m);
	pad(p);
	cr_assert(ir_verify(p, &d), "the padded model does not verify");
	uint32_t before = p->funcs[0]->nops;
	cr_assert_gt(before, 4 * m->funcs[0]->nops / 2, "padding added too little");
	float *a = malloc(6 * c.vocab * sizeof *a), *b = malloc(6 * c.vocab * sizeof *b);
	run(m, a, a + 5 * c.vocab, c.vocab);
	run(p, b, b + 5 * c.vocab, c.vocab);
	cr_expect(memcmp(a, b, 6 * c.vocab * sizeof *a) == 0, "padding changed the logits");
	PassOptions o = { .verify_each = true };
	cr_assert(pass_run_pipeline(p, "shape-infer,const-fold,cse,dce", &o, &d));
	char *want = ir_print_module_str(m), *got = ir_print_module_str(p);
	cr_expect_str_eq(got, want, "the passes did not undo the padding");
	run(p, b, b + 5 * c.vocab, c.vocab);
	cr_expect(memcmp(a, b, 6 * c.vocab * sizeof *a) == 0, "the passes changed the logits");
	free(want);
	free(got);
	free(a);
	free(b);
	ir_free_module(p);
	ir_free_module(m);
	unlink(weights);
}

Test(passes, each_pass_alone_removes_its_share)
{
	RmConfig c = config();
	c.layers = 1;
	Module *m = rm_build_module(&c, "pad");
	Diag d;
	diag_init(&d, stderr);
	cr_assert_str_eq(m->funcs[0]->name, "step"); /* no bounded values: every op padded alike */
	uint32_t n0 = m->funcs[0]->nops;
	Module *p = ir_clone_module(m);
	pad(p);
	uint32_t n1 = p->funcs[0]->nops, np = (n1 - n0) / 4; /* ops padded */
	cr_assert_gt(np, 10);
	cr_assert(pass_const_fold(p, &d));
	uint32_t n2 = p->funcs[0]->nops; /* one 'mul' by 1 per padded op */
	cr_expect_eq(n1 - n2, np);
	cr_assert(pass_cse(p, &d));
	uint32_t n3 = p->funcs[0]->nops; /* the duplicates, and equal splat 1s of a layer */
	cr_expect_geq(n2 - n3, np);
	cr_assert(pass_dce(p, &d)); /* the splats and the dead silus */
	cr_expect_eq(p->funcs[0]->nops, n0);
	cr_expect(ir_verify(p, &d));
	ir_free_module(p);
	ir_free_module(m);
}

/* A clean model: the default pipeline changes nothing but what row-sink does (the
 * prefill's last layer on its last row). */
Test(passes, default_pipeline_keeps_a_clean_model)
{
	RmConfig c = config();
	Module *m = rm_build_module(&c, "clean");
	Diag d;
	diag_init(&d, stderr);
	Module *sunk = ir_clone_module(m);
	cr_assert(pass_row_sink(sunk, &d));
	char *before = ir_print_module_str(m), *want = ir_print_module_str(sunk);
	cr_expect_str_neq(before, want, "row-sink left the prefill as it was");
	free(before);
	ir_free_module(sunk);
	cr_assert(pass_run_default(m, &d));
	char *got = ir_print_module_str(m);
	cr_expect_str_eq(got, want);
	free(want);
	free(got);
	ir_free_module(m);
}

Test(passes, rebuild_renumbers_and_replaces)
{
	Module *m = ir_new_module("r");
	Func *f = ir_new_func(m, "step", FN_STEP, (Loc){ 0 });
	ir_func_add_arg(m, f, "t", ir_type_scalar(DT_I32));
	Builder b = { .m = m, .f = f, .layer = -1 };
	ValueId x = ir_b_const_f32(&b, 2.0f, (Loc){ 0 });
	ValueId y = ir_b_const_f32(&b, 3.0f, (Loc){ 0 });
	ValueId xy[2] = { x, y };
	ValueId s = ir_b_op(&b, OP_ADD, xy, 2, NULL, NULL, (Loc){ 0 });
	ValueId t = ir_b_op(&b, OP_SILU, &s, 1, NULL, NULL, (Loc){ 0 });
	(void)t;
	bool keep[4] = { false, true, true, true };
	ValueId repl[4] = { IR_NO_VALUE, IR_NO_VALUE, IR_NO_VALUE, IR_NO_VALUE };
	repl[x] = y; /* x is dropped: its use reads y */
	pass_rebuild_func(m, f, keep, repl);
	cr_assert_eq(f->nops, 3);
	cr_assert_eq(f->nvals, 3);
	for (uint32_t i = 0; i < 3; i++) {
		cr_expect_eq(f->ops[i].dst, i);
		cr_expect_eq(f->vals[i].def, i);
	}
	cr_expect_eq(f->ops[1].args[0], 0);
	cr_expect_eq(f->ops[1].args[1], 0);
	cr_expect_eq(f->ops[2].args[0], 1);
	ir_free_module(m);
}
