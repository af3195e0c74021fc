/* test_frontend.c - the front end end to end: what lowering produces (params, state,
 * layer regions, constants, policy values), the llama example against the Hugging
 * Face reference fixture through the interpreter, and robustness: every file under
 * tests/ and examples/ (of any kind), truncated after every line, gives diagnostics
 * or a module that verifies, never a crash. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define SRC ELIDE_SOURCE_DIR "/"

/* Lowers text; diagnostics go to a buffer returned in *msgs (malloc'ed). */
static Module *
lower_bytes(const char *text, size_t len, const char *policy, char **msgs, int *nerrors)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	Diag d;
	diag_init(&d, out);
	SourceFile src = { .path = "t.elide", .text = text, .len = len };
	diag_add_source(&d, &src);
	Arena ar = { 0 };
	Ast *file = ast_parse(&ar, &src, &d);
	Module *m = d.nerrors == 0 ? fe_lower(file, policy, &d) : NULL;
	arena_free(&ar);
	fclose(out);
	if (nerrors)
		*nerrors = d.nerrors;
	if (msgs)
		*msgs = buf;
	else
		free(buf);
	return m;
}

static Module *
lower_text(const char *text, const char *policy, char **msgs, int *nerrors)
{
	return lower_bytes(text, strlen(text), policy, msgs, nerrors);
}

static Module *
load_example(const char *policy)
{
	char *text = ts_slurp(SRC "examples/llama/llama.elide", NULL);
	char *msgs;
	Module *m = lower_text(text, policy, &msgs, NULL);
	cr_assert(m, "llama.elide: %s", msgs);
	free(msgs);
	free(text);
	return m;
}

Test(frontend, llama_params_state_and_entries)
{
	Module *m = load_example(NULL);
	cr_assert_str_eq(m->name, "llama");
	cr_assert_eq(m->nlayers, 6);
	cr_assert_eq(m->nparams, 3 + 9 * 6);
	cr_assert_eq(m->nstates, 6);
	int32_t p = ir_find_param(m, "wk.3");
	cr_assert(p >= 0);
	cr_assert_str_eq(m->params[p].source, "model.layers.3.self_attn.k_proj.weight");
	cr_assert_eq(m->params[p].layer, 3);
	cr_assert_eq(m->params[p].type.dims[0], 32); /* kv_heads * head_dim */
	cr_assert_eq(m->params[p].type.dims[1], 64);
	cr_assert_eq(m->params[ir_find_param(m, "lm_head")].layer, -1);
	for (uint32_t i = 0; i < m->nstates; i++) {
		cr_assert_eq(m->states[i].layer, (int32_t)i);
		cr_assert_eq(m->states[i].ctx, 128);
		cr_assert_eq(m->states[i].kv_heads, 2);
		cr_assert_eq(m->states[i].head_dim, 16);
	}
	cr_assert_eq(ir_config_get(m, "head_dim", 0), 16);
	cr_assert_eq(ir_config_get(m, "kv_dim", 0), 32);
	Func *step = ir_find_func(m, "step"), *pre = ir_find_func(m, "prefill");
	cr_assert(step && pre);
	cr_assert_eq(step->kind, FN_STEP);
	cr_assert_eq(pre->kind, FN_PREFILL);
	cr_assert(pre->args[0].type.dyn0);
	cr_assert_eq(pre->args[0].type.dims[0], 128);
	cr_assert_eq(step->rets[0].dims[0], 256);
	cr_assert_eq(m->policy, NULL);
	ir_free_module(m);
}

/* Layer regions: contiguous, increasing, one per layer; ops in region l only read
 * params of layer l or global ones; attention in region l uses cache l. */
Test(frontend, layer_regions)
{
	Module *m = load_example(NULL);
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		int32_t cur = -1, seen = -1;
		int natt = 0;
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *op = &f->ops[i];
			if (op->layer != cur) {
				if (op->layer >= 0) {
					cr_assert_gt(op->layer, seen, "%s: region %d after %d", f->name, op->layer, seen);
					seen = op->layer;
				}
				cur = op->layer;
			}
			if (op->code == OP_PARAM) {
				int32_t pl = m->params[op->ia[0]].layer;
				cr_assert(pl == -1 || pl == op->layer, "%s: param %s in region %d", f->name,
				          m->params[op->ia[0]].name, op->layer);
			}
			if (op->code == OP_ATTENTION) {
				cr_assert_eq(op->ia[2], op->layer);
				cr_assert_eq(op->ia[0], 4);
				cr_assert_eq(op->ia[1], 2);
				natt++;
			}
			if (op->code == OP_ROPE) {
				cr_assert_eq(op->ia[2], 0, "HF rotate_half style");
				cr_assert_float_eq(op->fa[0], 10000.0f, 1e-3);
			}
			if (op->code == OP_RMSNORM)
				cr_assert_float_eq(op->fa[0], 1e-5f, 1e-12);
		}
		cr_assert_eq(seen, 5);
		cr_assert_eq(natt, 6);
		cr_assert_eq(f->ops[f->nops - 1].code, OP_RET);
		cr_assert_eq(f->ops[f->nops - 1].layer, -1);
	}
	ir_free_module(m);
}

Test(frontend, constants_and_substitution)
{
	const char *src = "model c {\n"
	                  "  const a = 3, b = (a + 1) * 2 - 6 / 3, c = a * b - (2 + -2), n = 7 / 2, big = 2 * (c / b) * 100;\n"
	                  "  weights safetensors { for l in 1..3 { w[l]: f32[c] = \"x{l}.{n}.y\"; } e: f32[4, c] = \"e\"; }\n"
	                  "  entry step(token: i32, pos: i32) -> f32[c] { return rmsnorm(embed(e, token), w[2]); }\n"
	                  "}\n";
	char *msgs;
	Module *m = lower_text(src, NULL, &msgs, NULL);
	cr_assert(m, "%s", msgs);
	cr_assert_eq(ir_config_get(m, "b", 0), 6);
	cr_assert_eq(ir_config_get(m, "c", 0), 18);
	cr_assert_eq(ir_config_get(m, "n", 0), 3);
	cr_assert_eq(ir_config_get(m, "big", 0), 600);
	cr_assert_str_eq(m->params[ir_find_param(m, "w.2")].source, "x2.3.y");
	cr_assert_eq(ir_find_param(m, "w.0"), -1);
	cr_assert_eq(m->params[ir_find_param(m, "w.1")].type.dims[0], 18);
	free(msgs);
	ir_free_module(m);
}

Test(frontend, policy_values)
{
	Module *m = load_example("fast");
	Policy *p = m->policy;
	cr_assert(p);
	cr_assert_str_eq(p->name, "fast");
	cr_assert_eq(p->nstmts, 5);
	PolicyStmt *s = &p->stmts[0];
	cr_assert_eq(s->verb, POL_PRUNE);
	cr_assert_eq(s->prune.unit, PU_FFN);
	cr_assert(!s->prune.keep.count && s->prune.keep.den == 0);
	cr_assert_float_eq(s->prune.keep.value, 0.75, 1e-12);
	cr_assert_eq(s->prune.score, PS_MAW);
	cr_assert(s->prune.layers.range);
	cr_assert_eq(s->prune.layers.lo, 1);
	cr_assert_eq(s->prune.layers.hi, 4);
	cr_assert(!ir_policy_given(s, PK_PRUNE_PROTECT) && !ir_policy_given(s, PK_PRUNE_MULTIPLE));
	cr_assert_gt(s->key_loc[PK_PRUNE_SCORE].line, 0);
	s = &p->stmts[1];
	cr_assert_eq(s->prune.unit, PU_KV_GROUP);
	cr_assert_eq(s->prune.keep.num, 1);
	cr_assert_eq(s->prune.keep.den, 2);
	cr_assert_float_eq(s->prune.keep.value, 0.5, 1e-12);
	s = &p->stmts[2];
	cr_assert_eq(s->verb, POL_EXIT);
	cr_assert_eq(s->exit.at.n, 2);
	cr_assert_eq(s->exit.at.list[0], 2);
	cr_assert_eq(s->exit.at.list[1], 4);
	cr_assert_str_eq(s->exit.head, "head");
	cr_assert_eq(s->exit.measure, EM_MARGIN);
	cr_assert_float_eq(s->exit.threshold, 0.4, 1e-12);
	cr_assert_float_eq(s->exit.decay, 4, 1e-12);
	cr_assert_eq(s->exit.kv, EKV_PROPAGATE);
	cr_assert(!ir_policy_given(s, PK_EXIT_PATIENCE));
	s = &p->stmts[3];
	cr_assert_eq(s->verb, POL_SKIP);
	cr_assert_eq(s->skip.kind, SK_FFN);
	cr_assert_float_eq(s->skip.threshold, 0.95, 1e-12);
	cr_assert_eq(s->skip.warmup, 4);
	cr_assert_eq(s->skip.cold.n, 2);
	cr_assert_eq(s->skip.cold.list[1], 5);
	s = &p->stmts[4];
	cr_assert_eq(s->verb, POL_ATTEND);
	cr_assert_eq(s->attend.kind, AK_DECODE);
	cr_assert_eq(s->attend.page, 16);
	cr_assert_eq(s->attend.budget, 64);
	cr_assert_eq(s->attend.sinks, 4);
	cr_assert_eq(s->attend.window, 32);
	cr_assert_eq(s->attend.dense_layers.n, 2);
	ir_free_module(m);

	m = load_example("slim");
	cr_assert_eq(m->policy->stmts[0].prune.protect.n, 2);
	cr_assert_eq(m->policy->stmts[0].prune.protect.list[1], 5); /* last layer */
	cr_assert(ir_policy_given(&m->policy->stmts[1], PK_PRUNE_PROTECT));
	cr_assert_eq(m->policy->stmts[1].prune.protect.n, 0); /* none */
	cr_assert_eq(m->policy->stmts[0].prune.multiple, 4);
	ir_free_module(m);
	m = load_example("skipdecode");
	s = &m->policy->stmts[0];
	cr_assert_eq(s->skip.kind, SK_SCHEDULE);
	cr_assert_eq(s->skip.n_max, 6);
	cr_assert_eq(s->skip.n_min, 2);
	cr_assert_eq(s->skip.ctx, 128);
	ir_free_module(m);
	m = load_example("routed");
	cr_assert_eq(m->policy->stmts[0].skip.kind, SK_ROUTER);
	cr_assert_eq(m->policy->stmts[0].skip.buckets, 4);
	ir_free_module(m);
	m = load_example("topk");
	s = &m->policy->stmts[0];
	cr_assert(s->attend.kind == AK_PREFILL && s->attend.method == PM_BLOCK_TOPK);
	cr_assert(s->attend.block == 16 && s->attend.topk == 4 && s->attend.dense_layers.n == 1);
	ir_free_module(m);
	m = load_example("flex");
	s = &m->policy->stmts[0];
	cr_assert(s->attend.method == PM_COVERAGE && s->attend.block == 16 && s->attend.min_tokens == 64);
	cr_assert_float_eq(s->attend.gamma, 0.9, 1e-12);
	ir_free_module(m);
	m = load_example("shallow");
	s = &m->policy->stmts[0];
	cr_assert(s->verb == POL_DROP && s->drop.layers.range && s->drop.layers.lo == 3 && s->drop.layers.hi == 5);
	ir_free_module(m);
}

/* Every policy of the example prints as .eir text that reads back to the same text. */
Test(frontend, every_example_policy_round_trips)
{
	static const char *const names[] = { "slim", "calibrated", "shallow", "shortgpt", "blocks", "skipdecode",
		                             "ffnskip", "routed", "calm", "patient", "entropy", "saturate",
		                             "quest", "topk", "flex", "fast" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		Module *m = load_example(names[i]);
		char *a = ir_print_module_str(m);
		static Diag d;
		diag_init(&d, stderr);
		SourceFile src = { .path = "rt.eir", .text = a, .len = strlen(a) };
		Module *m2 = ir_parse_module(&src, &d);
		cr_assert(m2, "%s does not read back", names[i]);
		char *b = ir_print_module_str(m2);
		cr_assert_str_eq(a, b, "%s", names[i]);
		cr_assert_eq(m2->policy->nstmts, m->policy->nstmts);
		for (uint32_t k = 0; k < m->policy->nstmts; k++)
			cr_assert_eq(m2->policy->stmts[k].given, m->policy->stmts[k].given, "%s statement %u", names[i], k);
		free(a);
		free(b);
		ir_free_module(m);
		ir_free_module(m2);
	}
}

/* ---- the example against Hugging Face's numbers ---- */

#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/"

/* examples/llama/llama.elide unchanged, with the fixture's weights (made at its sizes
 * by tests/fixtures/make_llama_fixture.py). */
static Module *
example_with_fixture(void)
{
	Module *m = load_example(NULL);
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, FIX "llama_tiny.safetensors", &d));
	return m;
}

static int
read_tokens(int32_t *tok, int max)
{
	FILE *f = fopen(FIX "llama_tiny.tokens", "r");
	cr_assert(f);
	int n = 0;
	while (n < max && fscanf(f, "%d", &tok[n]) == 1) {
		n++;
		if (fgetc(f) != ',')
			break;
	}
	fclose(f);
	return n;
}

Test(frontend, llama_example_matches_hugging_face)
{
	int32_t tok[128];
	int n = read_tokens(tok, 128);
	cr_assert_gt(n, 1);
	size_t len;
	float *ref = (float *)ts_slurp(FIX "llama_tiny.logits", &len);
	int vocab = (int)(len / 4 / (size_t)n);
	cr_assert_eq(vocab, 256);
	Module *m = example_with_fixture();
	InterpState *s = interp_new(m);
	float out[256];
	char err[256];
	for (int t = 0; t < n; t++) {
		cr_assert(interp_run(s, "step", &tok[t], 1, t, out, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref + (size_t)t * vocab, vocab);
		cr_expect(e <= 1e-4, "step, position %d: relative error %.3g", t, e);
	}
	interp_reset(s);
	cr_assert(interp_run(s, "prefill", tok, n, 0, out, err, sizeof err), "%s", err);
	double e = ts_rel_err(out, ref + (size_t)(n - 1) * vocab, vocab);
	cr_expect(e <= 1e-4, "prefill: relative error %.3g", e);
	interp_free(s);
	ir_free_module(m);
	free(ref);
}

/* ---- robustness: truncated inputs ---- */

static int nfiles, nprefixes, nclean;

/* Every file (sources, fixtures, binaries too), cut after each of its lines; large
 * files are cut within their first 64 KiB. */
static void
truncations(const char *path)
{
	size_t len;
	char *text = ts_slurp(path, &len);
	if (len > 65536)
		len = 65536;
	nfiles++;
	for (size_t i = 0; i <= len; i++) {
		if (i != len && text[i] != '\n')
			continue;
		int nerr;
		Module *m = lower_bytes(text, i, NULL, NULL, &nerr);
		cr_assert((m != NULL) == (nerr == 0), "%s cut at byte %zu: module %p with %d errors", path, i,
		          (void *)m, nerr);
		if (m) {
			Diag d;
			diag_init(&d, stderr);
			cr_assert(ir_verify(m, &d), "%s cut at byte %zu: the lowered IR does not verify", path, i);
		}
		nclean += m != NULL;
		ir_free_module(m);
		nprefixes++;
	}
	free(text);
}

static void
walk(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert(d, "cannot open %s", dir);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR && strcmp(e->d_name, "Output") != 0) /* lit's scratch */
			walk(path);
		else if (e->d_type == DT_REG)
			truncations(path);
	}
	closedir(d);
}

Test(frontend, every_truncated_file_gives_diagnostics)
{
	walk(SRC "tests");
	walk(SRC "examples");
	cr_log_info("%d files, %d prefixes, %d clean", nfiles, nprefixes, nclean);
	cr_assert_gt(nfiles, 60);
	cr_assert_gt(nclean, 5); /* the whole valid files */
}
