/* test_eir.c - the textual IR: print(parse(print(m))) == print(m) for every .eir file
 * under tests/, for the llama example under every policy and for random models built
 * without the front end; exact numbers and quoted names; parse errors with
 * locations; the verifier on good and mutated modules; random byte mutations of a
 * valid file give clean errors, never a crash. */
#include <criterion/criterion.h>
#include <float.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

/* A Diag writing into memory. */
typedef struct Cap {
	Diag d;
	FILE *fp;
	char *buf;
	size_t n;
	SourceFile *srcs[4]; /* parsed texts: Locs point at their paths until cap_fini */
	int nsrcs;
} Cap;

static void
cap_init(Cap *c)
{
	memset(c, 0, sizeof *c);
	c->fp = open_memstream(&c->buf, &c->n);
	diag_init(&c->d, c->fp);
}

static const char *
cap_text(Cap *c)
{
	fflush(c->fp);
	return c->buf ? c->buf : "";
}

static void
cap_fini(Cap *c)
{
	fclose(c->fp);
	free(c->buf);
	for (int i = 0; i < c->nsrcs; i++)
		free(c->srcs[i]);
}

static Module *
parse_text(const char *path, const char *text, Cap *c)
{
	cr_assert_lt(c->nsrcs, 4);
	SourceFile *src = calloc(1, sizeof *src); /* lives as long as the module's Locs */
	c->srcs[c->nsrcs++] = src;
	src->path = path;
	src->text = text;
	src->len = strlen(text);
	diag_add_source(&c->d, src);
	return ir_parse_module(src, &c->d);
}

/* print(parse(print(m))) == print(m); returns print(m) (malloc'ed). */
static char *
expect_roundtrip(const Module *m, const char *what)
{
	char *a = ir_print_module_str(m);
	Cap c;
	cap_init(&c);
	Module *m2 = parse_text(what, a, &c);
	cr_assert(m2, "%s: printed IR does not parse:\n%s", what, cap_text(&c));
	char *b = ir_print_module_str(m2);
	cr_expect_str_eq(b, a, "%s: round trip differs", what);
	free(b);
	ir_free_module(m2);
	cap_fini(&c);
	return a;
}

/* ---- every .eir under tests/ ---- */

static char *files[512];
static int nfiles;

static int
collect(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	size_t n = strlen(path);
	if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".eir") == 0 && !strstr(path, "/Output/") &&
	    nfiles < (int)(sizeof files / sizeof files[0]))
		files[nfiles++] = strdup(path);
	return 0;
}

Test(eir, every_test_file_roundtrips)
{
	nftw(ELIDE_SOURCE_DIR "/tests", collect, 16, FTW_PHYS);
	cr_assert_geq(nfiles, 30, "found only %d .eir files under tests/", nfiles);
	int parsed = 0;
	for (int i = 0; i < nfiles; i++) {
		char *text = ts_slurp(files[i], NULL);
		Cap c;
		cap_init(&c);
		Module *m = parse_text(files[i], text, &c);
		/* a file may fail to parse only when its RUN line expects elide to fail */
		if (!m) {
			cr_expect(strstr(text, "RUN: not elide"), "%s does not parse:\n%s", files[i], cap_text(&c));
		} else {
			free(expect_roundtrip(m, files[i]));
			ir_free_module(m);
			parsed++;
		}
		cap_fini(&c);
		free(text);
		free(files[i]);
	}
	cr_expect_geq(parsed, 25);
}

/* ---- modules from the front end and from the random model builder ---- */

Test(eir, llama_example_under_every_policy)
{
	static const char *const policies[] = { NULL,       "slim",  "calibrated", "shallow", "shortgpt", "blocks",
		                                "skipdecode", "ffnskip", "routed",  "calm",     "patient",
		                                "entropy",    "saturate", "quest",   "topk",     "flex",
		                                "fast" };
	for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
		Cap c;
		cap_init(&c);
		Module *m = fe_load(ELIDE_SOURCE_DIR "/examples/llama/llama.elide", policies[i], &c.d);
		cr_assert(m, "policy %s: %s", policies[i], cap_text(&c));
		cr_expect(ir_verify(m, &c.d), "policy %s does not verify:\n%s", policies[i], cap_text(&c));
		char *a = expect_roundtrip(m, policies[i] ? policies[i] : "dense");
		if (policies[i])
			cr_expect(strstr(a, "\npolicy @"), "policy %s not printed", policies[i]);
		free(a);
		ir_free_module(m);
		/* fe_load keeps its source for the life of the process; give it back here
		 * so that the leak checker of the sanitizer build stays quiet */
		SourceFile *fs = (SourceFile *)c.d.srcs[0];
		free((char *)fs->text);
		free((char *)fs->path);
		free(fs);
		cap_fini(&c);
	}
}

Test(eir, random_models)
{
	for (uint64_t seed = 1; seed <= 4; seed++) {
		RmConfig rc = rm_default_config();
		rc.seed = seed;
		rc.layers = (int)seed;
		Module *m = rm_build_module(&rc, "rnd");
		Cap c;
		cap_init(&c);
		cr_expect(ir_verify(m, &c.d), "seed %llu:\n%s", (unsigned long long)seed, cap_text(&c));
		free(expect_roundtrip(m, "rnd"));
		cap_fini(&c);
		ir_free_module(m);
	}
}

/* ---- exactness of numbers, names and strings ---- */

Test(eir, exact_numbers_names_strings)
{
	Module *m = ir_new_module("odd name");
	m->nlayers = 1;
	m->weights_path = "w \"x\".safetensors";
	m->manifest_notes = "line1\nline2\ttab \x01";
	ir_config_set(m, "dim", 4);
	uint32_t p = ir_add_param(m, "a param", "src\\name", ir_type_mat(DT_F32, 2, 4), 0, (Loc){ 0 });
	m->params[p].hash = 0xfedcba9876543210ull;
	Func *f = ir_new_func(m, "step", FN_STEP, (Loc){ 0 });
	ir_func_add_arg(m, f, "token", ir_type_scalar(DT_I32));
	static const float vals[] = { 0.1f, 1e-45f, FLT_MAX, -0.0f, 3.0f, 1.17549435e-38f, 16777217.0f, INFINITY, -2.5e-7f };
	Builder b = { .m = m, .f = f, .layer = 0, .diag = NULL };
	ValueId last = IR_NO_VALUE;
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		Type t = ir_type_vec(DT_F32, 4);
		last = ir_b_const_f32(&b, vals[i], (Loc){ 0 });
		f->vals[last].type = t;
		float fa[IR_NFA] = { vals[i], -vals[i] };
		int64_t ia[IR_NIA] = { 0, 0, 0, (int64_t)i - 3 };
		last = ir_b_op(&b, OP_SCALE, &last, 1, ia, fa, (Loc){ 0 });
		cr_assert_neq(last, IR_NO_VALUE);
	}
	ValueId pv = ir_b_param(&b, p, (Loc){ 0 });
	(void)pv;
	ir_emit(m, f, OP_RET, ir_type_vec(DT_F32, 4), &last, 1, (Loc){ 0 });
	f->rets = arena_alloc(&m->arena, sizeof *f->rets);
	f->rets[0] = ir_type_vec(DT_F32, 4);
	f->nrets = 1;
	char *a = expect_roundtrip(m, "exact");
	cr_expect(strstr(a, "module @\"odd name\""), "%s", a);
	cr_expect(strstr(a, "param @\"a param\" : f32[2, 4] layer 0 = \"src\\\\name\" hash 0xfedcba9876543210;"), "%s", a);
	cr_expect(strstr(a, "notes = \"line1\\nline2\\ttab \\x01\";"), "%s", a);
	cr_expect(strstr(a, "{factor = 0.1, fa1 = -0.1, ia3 = -3}") || strstr(a, "{ia3 = -3, factor = 0.1, fa1 = -0.1}"),
	          "%s", a);
	/* every float reads back to the same bits */
	Cap c;
	cap_init(&c);
	Module *m2 = parse_text("exact", a, &c);
	cr_assert(m2, "%s", cap_text(&c));
	const Func *f2 = m2->funcs[0];
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
		const Op *k = &f2->ops[2 * i], *s = &f2->ops[2 * i + 1];
		cr_expect_eq(k->code, OP_CONST);
		cr_expect(memcmp(&k->fa[0], &vals[i], sizeof(float)) == 0, "const %zu: %a != %a", i, (double)k->fa[0],
		          (double)vals[i]);
		cr_expect(memcmp(&s->fa[0], &vals[i], sizeof(float)) == 0, "scale %zu", i);
		cr_expect_eq(s->ia[3], (int64_t)i - 3);
		cr_expect_eq(k->layer, 0);
	}
	cr_expect_eq(m2->params[0].hash, 0xfedcba9876543210ull);
	cr_expect_str_eq(m2->manifest_notes, m->manifest_notes);
	ir_free_module(m2);
	cap_fini(&c);
	free(a);
	ir_free_module(m);
}

/* Every verb and subject, every kind of option value: typed when read, printed in
 * policy.def's order, and the text is a fixed point. */
Test(eir, policy_values_and_empty_ret)
{
	const char *text = "module @t {\n  layers = 4;\n}\n\npolicy @p {\n"
	                   "  prune ffn_neuron(keep = 0.1, score = maw, layers = 1..4, multiple = 3, protect = [], "
	                   "calibrate = \"q\\\"uote\", tokens = 64);\n"
	                   "  prune kv_group(keep = 5/6, protect = [0, 3]);\n"
	                   "  prune sublayer(keep = 2, score = bi, block = ffn);\n"
	                   "  drop layers(layers = [1, 2]);\n"
	                   "  drop layers(layers = 2..4);\n"
	                   "  skip schedule(n_max = 4, n_min = 2, ctx = 128);\n"
	                   "  skip ffn(threshold = 0.95, warmup = 4, cold = [0, 3], layers = 1..3);\n"
	                   "  skip router(buckets = 4, calibrate = \"c.txt\");\n"
	                   "  exit(at = [1, 2], head = h, measure = entropy, threshold = 1.5, decay = 1e+300, "
	                   "patience = 2, kv = none);\n"
	                   "  attend decode(page = 16, budget = 64, sinks = 4, window = 32, dense_layers = [0]);\n"
	                   "  attend prefill(method = coverage, block = 16, gamma = -2.5, min_tokens = 64, "
	                   "dense_layers = []);\n"
	                   "}\n\n"
	                   "entry forward @f(@tokens: i32[<=8]) -> () {\n  %0 = arg 0 : i32[<=8]\n  ret ()\n}\n";
	Cap c;
	cap_init(&c);
	Module *m = parse_text("p.eir", text, &c);
	cr_assert(m, "%s", cap_text(&c));
	char *a = expect_roundtrip(m, "policy");
	cr_expect_str_eq(a, text);
	const Policy *p = m->policy;
	cr_assert_eq(p->nstmts, 11);
	const PolicyStmt *s = &p->stmts[0];
	cr_expect_eq(s->verb, POL_PRUNE);
	cr_expect_eq(s->prune.unit, PU_FFN);
	cr_expect(!s->prune.keep.count);
	cr_expect_float_eq(s->prune.keep.value, 0.1, 1e-12);
	cr_expect_eq(s->prune.score, PS_MAW);
	cr_expect(s->prune.layers.range && s->prune.layers.lo == 1 && s->prune.layers.hi == 4);
	cr_expect_eq(s->prune.multiple, 3);
	cr_expect(ir_policy_given(s, PK_PRUNE_PROTECT) && s->prune.protect.n == 0);
	cr_expect_str_eq(s->prune.calibrate, "q\"uote");
	cr_expect_eq(s->key_loc[PK_PRUNE_SCORE].line, 6);
	cr_expect_eq(s->key_loc[PK_PRUNE_SCORE].col, 32);
	s = &p->stmts[1];
	cr_expect_eq(s->prune.keep.num, 5);
	cr_expect_eq(s->prune.keep.den, 6);
	cr_expect_float_eq(s->prune.keep.value, 5.0 / 6.0, 1e-12);
	cr_expect(!ir_policy_given(s, PK_PRUNE_SCORE));
	cr_expect(p->stmts[2].prune.keep.count && p->stmts[2].prune.block == PB_FFN);
	cr_expect(!p->stmts[3].drop.layers.range && p->stmts[3].drop.layers.n == 2);
	cr_expect(p->stmts[4].drop.layers.range && p->stmts[4].drop.layers.hi == 4);
	s = &p->stmts[5];
	cr_expect(s->skip.kind == SK_SCHEDULE && s->skip.n_max == 4 && s->skip.n_min == 2 && s->skip.ctx == 128);
	s = &p->stmts[6];
	cr_expect(s->skip.kind == SK_FFN && s->skip.warmup == 4 && s->skip.cold.list[1] == 3 && s->skip.layers.lo == 1);
	cr_expect_float_eq(s->skip.threshold, 0.95, 1e-12);
	cr_expect(p->stmts[7].skip.kind == SK_ROUTER && p->stmts[7].skip.buckets == 4);
	s = &p->stmts[8];
	cr_expect(s->verb == POL_EXIT && s->exit.at.n == 2 && s->exit.measure == EM_ENTROPY && s->exit.kv == EKV_NONE);
	cr_expect_str_eq(s->exit.head, "h");
	cr_expect_eq(s->exit.decay, 1e300);
	s = &p->stmts[9];
	cr_expect(s->attend.kind == AK_DECODE && s->attend.page == 16 && s->attend.budget == 64 && s->attend.window == 32);
	s = &p->stmts[10];
	cr_expect(s->attend.kind == AK_PREFILL && s->attend.method == PM_COVERAGE && s->attend.block == 16);
	cr_expect_eq(s->attend.gamma, -2.5);
	cr_expect(ir_verify(m, &c.d), "%s", cap_text(&c));
	free(a);
	ir_free_module(m);
	cap_fini(&c);
}

/* Policy statements are typed as they are read: what does not fit is a parse error
 * at the option. */
Test(eir, policy_errors)
{
	const char *head = "module @t {\n  layers = 4;\n}\n\npolicy @p {\n";
	const char *cases[][2] = {
		{ "  prune ffn_neuron(keep = 0.5, nope = 3);\n", "p.eir:6:32: error: policy: unknown option 'nope' for 'prune ffn_neuron'" },
		{ "  prune ffn_neuron(keep = 0.5, score = fast);\n", "p.eir:6:32: error: policy: expected one of 'l1', 'l2', 'maw', 'angular', 'bi' or 'act' for 'score'" },
		{ "  prune ffn_neuron(keep = 0.5, layers = [1]);\n", "p.eir:6:32: error: policy: expected a layer range a..b for 'layers'" },
		{ "  prune ffn_neuron(keep = 0.5, multiple = 2.5);\n", "p.eir:6:32: error: policy: expected an integer for 'multiple'" },
		{ "  prune ffn_neuron(score = l1);\n", "p.eir:6:3: error: policy: 'prune ffn_neuron' needs 'keep'" },
		{ "  prune head(keep = 0.5, block = ffn);\n", "p.eir:6:26: error: policy: unknown option 'block' for 'prune head'" },
		{ "  prune neuron(keep = 0.5);\n", "p.eir:6:3: error: policy: 'prune' has no subject 'neuron'" },
		{ "  exit(at = [1], head = h, kv = maybe);\n", "p.eir:6:28: error: policy: expected one of 'propagate' or 'none' for 'kv'" },
		{ "  exit(at = [1]);\n", "p.eir:6:3: error: policy: 'exit' needs 'head'" },
		{ "  skip ffn(n_max = 3, threshold = 0.5);\n", "p.eir:6:12: error: policy: unknown option 'n_max' for 'skip ffn'" },
		{ "  attend decode(page = 16);\n", "p.eir:6:3: error: policy: 'attend decode' needs 'budget'" },
		{ "  attend prefill(method = block_topk, block = 16);\n", "p.eir:6:3: error: policy: 'attend prefill' needs 'topk'" },
		{ "  shrink ffn_neuron(keep = 0.75);\n", "p.eir:6:3: error: policy: expected a verb (prune, skip, exit, attend, drop, quantize), saw 'shrink'" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[512];
		snprintf(text, sizeof text, "%s%s}\n", head, cases[i][0]);
		Cap c;
		cap_init(&c);
		Module *m = parse_text("p.eir", text, &c);
		cr_expect_null(m, "parsed: %s", cases[i][0]);
		cr_expect(strstr(cap_text(&c), cases[i][1]), "wanted '%s' in:\n%s", cases[i][1], cap_text(&c));
		ir_free_module(m);
		cap_fini(&c);
	}
}

/* ---- errors ---- */

static void
expect_parse_error(const char *text, const char *want)
{
	Cap c;
	cap_init(&c);
	Module *m = parse_text("e.eir", text, &c);
	cr_expect_null(m, "parsed: %s", text);
	cr_expect(strstr(cap_text(&c), want), "wanted '%s' in:\n%s", want, cap_text(&c));
	ir_free_module(m);
	cap_fini(&c);
}

Test(eir, parse_errors)
{
	expect_parse_error("", "e.eir:1:1: error: expected 'module', saw end of file");
	expect_parse_error("module @t {\n  layers = x;\n}\n", "e.eir:2:12: error: expected integer, saw identifier 'x'");
	expect_parse_error("module @t {\n  param @a : q32[4];\n}\n", "e.eir:2:14: error: expected a dtype");
	expect_parse_error("module @t {\n  param @a : f32[4];\n  param @a : f32[4];\n}\n",
	                   "e.eir:3:9: error: param 'a' is defined twice");
	expect_parse_error("module @t {\n  state @s : kvcache(ctx = 4, kv_heads = 1);\n}\n", "state 's' needs 'head_dim'");
	expect_parse_error("module @t {\n  param @a : f32[1, 2, 3, 4, 5];\n}\n", "expected at most 4 dimensions");
	expect_parse_error("module @t {\n}\nentry walk @f() -> f32 {\n  ret ()\n}\n",
	                   "e.eir:3:12: error: expected an entry kind (step, prefill, forward), saw 'walk'");
	expect_parse_error("module @t {\n}\nentry step @f(@a: i32) -> i32 {\n  %0 = arg 0 : i32\n  %1 = add %0, %0 {heads = 2} : i32\n  ret %1\n}\n",
	                   "e.eir:5:20: error: add: unknown attribute 'heads'");
	expect_parse_error("module @t {\n  layers = 99999999999999999999;\n}\n", "expected a 64-bit integer");
	expect_parse_error("module @t {\n  notes = \"abc;\n}\n", "unterminated string");
	expect_parse_error("module @t {\n  # x\n}\n", "e.eir:2:3: error: unexpected character '#'");
}

Test(eir, verifier_reports_every_problem)
{
	const char *text = "module @t {\n  layers = 1;\n  param @w : f32[4, 4] = \"w\";\n}\n\n"
	                   "entry step @s(@t: i32) -> f32[4] {\n"
	                   "  %0 = arg 0 : i32\n"
	                   "  %1 = param @w : f32[4, 4]\n"
	                   "  %2 = embed %1, %0 : f32[5]\n"
	                   "  %3 = silu %0 : f32[4]\n"
	                   "  %4 = add %2, %9 : f32[4]\n"
	                   "  %9 = tanh %2 : f32[5]\n"
	                   "  ret %3\n}\n";
	Cap c;
	cap_init(&c);
	Module *m = parse_text("v.eir", text, &c);
	cr_assert(m, "%s", cap_text(&c));
	cr_expect_not(ir_verify(m, &c.d));
	const char *out = cap_text(&c);
	cr_expect(strstr(out, "v.eir:9:8: error: embed: expected result type f32[4], saw f32[5]"), "%s", out);
	cr_expect(strstr(out, "v.eir:10:8: error: silu: expected an f32 operand, saw i32"), "%s", out);
	cr_expect(strstr(out, "v.eir:11:8: error: add: operand 1 (%5) is used before its definition"), "%s", out);
	cr_expect_eq(c.d.nerrors, 3, "%s", out);
	ir_free_module(m);
	cap_fini(&c);
}

/* Random byte mutations of a valid file: the parser and the verifier must give
 * clean errors (the ASan build runs this too). */
Test(eir, mutations_never_crash)
{
	Module *m = rm_build_module(&(RmConfig){ .dim = 16, .layers = 2, .heads = 2, .kv_heads = 1, .ffn = 24,
	                                          .vocab = 32, .ctx = 8, .seed = 3 },
	                            "mut");
	char *good = ir_print_module_str(m);
	ir_free_module(m);
	size_t n = strlen(good);
	RmRng rng = { 12345 };
	static const char alphabet[] = "%@{}()[],;:=<-.0123456789xaz \n\"/\\";
	int parsed = 0;
	for (int it = 0; it < 1500; it++) {
		char *t = strdup(good);
		int k = 1 + (int)(rm_rng_next(&rng) % 4);
		for (int j = 0; j < k; j++) {
			size_t at = rm_rng_next(&rng) % n;
			uint64_t r = rm_rng_next(&rng);
			if (r % 3 == 0)
				t[at] = alphabet[(r >> 8) % (sizeof alphabet - 1)];
			else if (r % 3 == 1)
				t[at] = (char)(1 + (r >> 8) % 255);
			else
				t[at] = ' ';
		}
		FILE *sink = fopen("/dev/null", "w");
		Diag d;
		diag_init(&d, sink);
		SourceFile src = { "m.eir", t, strlen(t) };
		Module *mm = ir_parse_module(&src, &d);
		if (mm) {
			parsed++;
			ir_verify(mm, &d);
			char *again = ir_print_module_str(mm);
			free(again);
			ir_free_module(mm);
		} else {
			cr_expect_gt(d.nerrors, 0, "NULL module without an error");
		}
		fclose(sink);
		free(t);
	}
	cr_expect_gt(parsed, 0);
	free(good);
}
