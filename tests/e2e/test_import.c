/* test_import.c - `elide import` end to end, against the independent reference of
 * tests/fixtures/make_import_fixtures.py: each checkpoint (Llama 3 with RoPE scaling
 * and tied embeddings, a sharded Llama 2, Qwen2 with q/k/v biases, and the GGUF file
 * of the sharded weights in llama.cpp's layout) is imported by the driver, loaded
 * from its directory or file, compiled and run token by token with `step` and as
 * one `prefill`; every position's logits must match torch's within a maximum
 * relative error of 1e-4 with the same argmax.  The interpreter runs the same text.
 * The BERT fixture, in a directory with a BertForSequenceClassification config, is
 * imported and matched the same way.  Also: a tensor in two -w files is an error
 * naming it and both files, and unknown architectures name the field. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/slurp.h"

#define FIX ELIDE_SOURCE_DIR "/tests/fixtures/import/"
#define T 16
#define VOCAB 48
#define TOL 1e-4

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);

static int
sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static char dir[512];

static void
mkwork(void)
{
	snprintf(dir, sizeof dir, "%s/import_%d", ELIDE_BINARY_DIR, (int)getpid());
	mkdir(dir, 0777);
}

/* Each test's working folder goes when the test ends, passed or failed. */
static void
rmwork(void)
{
	if (dir[0])
		sh("rm -rf '%s'", dir);
}

TestSuite(import, .fini = rmwork);

static void
tokens(int32_t *tok)
{
	FILE *f = fopen(FIX "tokens.txt", "r");
	cr_assert(f);
	for (int i = 0; i < T; i++) {
		cr_assert_eq(fscanf(f, "%d", &tok[i]), 1);
		(void)fgetc(f);
	}
	fclose(f);
}

/* Imports `ckpt`, loads the weights from `weights`, checks every position against
 * FIX NAME.logits with the interpreter and the compiled step and prefill. */
static void
check_case(const char *ckpt, const char *weights, const char *name)
{
	mkwork();
	char model[600];
	snprintf(model, sizeof model, "%s/%s.elide", dir, name);
	cr_assert_eq(sh("%s import %s -o %s", ELIDE_BIN, ckpt, model), 0, "elide import %s", ckpt);
	char refp[600];
	snprintf(refp, sizeof refp, FIX "%s.logits", name);
	size_t n;
	float *ref = ts_slurp(refp, &n);
	cr_assert_eq(n, sizeof(float) * T * VOCAB);
	int32_t tok[T];
	tokens(tok);
	static Diag d;
	diag_init(&d, stderr);
	Module *m = fe_load(model, NULL, &d);
	cr_assert(m, "%s does not load", model);
	cr_assert(ir_load_weights(m, &weights, 1, &d), "loading %s", weights);
	float out[VOCAB];
	char err[256];
	double worst_i = 0, worst_c = 0;
	/* interpreter, decode step by step */
	InterpState *is = interp_new(m);
	for (int p = 0; p < T; p++) {
		cr_assert(interp_run(is, "step", &tok[p], 1, p, out, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref + p * VOCAB, VOCAB);
		worst_i = fmax(worst_i, e);
		cr_expect(e <= TOL, "%s interpreter pos %d: relative error %g", name, p, e);
		cr_expect_eq(ts_argmax(out, VOCAB), ts_argmax(ref + p * VOCAB, VOCAB), "%s interpreter argmax at %d", name, p);
	}
	interp_free(is);
	/* compiled: step by step, then every prefix as one prefill */
	TJit *t = tj_new(m, true);
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	for (int p = 0; p < T; p++) {
		cr_assert_eq(step(t->ctx, tok[p], p, out), ELIDE_OK);
		double e = ts_rel_err(out, ref + p * VOCAB, VOCAB);
		worst_c = fmax(worst_c, e);
		cr_expect(e <= TOL, "%s compiled step pos %d: relative error %g", name, p, e);
		cr_expect_eq(ts_argmax(out, VOCAB), ts_argmax(ref + p * VOCAB, VOCAB), "%s compiled argmax at %d", name, p);
	}
	for (int len = 1; len <= T; len++) {
		cr_assert_eq(prefill(t->ctx, tok, len, 0, out), ELIDE_OK);
		double e = ts_rel_err(out, ref + (len - 1) * VOCAB, VOCAB);
		worst_c = fmax(worst_c, e);
		cr_expect(e <= TOL, "%s compiled prefill of %d: relative error %g", name, len, e);
	}
	printf("import %s: max relative error vs torch: interpreter %.3g, compiled %.3g\n", name, worst_i, worst_c);
	tj_free(t);
	ir_free_module(m);
	free(ref);
}

Test(import, llama3_rope_scaling_tied)
{
	check_case(FIX "llama3", FIX "llama3", "llama3");
}

Test(import, sharded_index)
{
	check_case(FIX "sharded", FIX "sharded", "sharded");
}

Test(import, qwen2_biases)
{
	check_case(FIX "qwen2", FIX "qwen2", "qwen2");
}

/* llama.cpp's layout of the sharded weights: same logits */
Test(import, gguf_same_logits_as_safetensors)
{
	check_case(FIX "sharded.gguf", FIX "sharded.gguf", "sharded");
}

/* the shards given one by one with -w, and the same shard twice */
Test(import, repeated_w)
{
	mkwork();
	cr_assert_eq(sh("%s import %s -o %s/s.elide", ELIDE_BIN, FIX "sharded", dir), 0);
	const char *s1 = FIX "sharded/model-00001-of-00002.safetensors", *s2 = FIX "sharded/model-00002-of-00002.safetensors";
	cr_assert_eq(sh("%s run %s/s.elide -w %s -w %s --tokens 1,17,42 --interp > %s/o.txt", ELIDE_BIN, dir, s1, s2, dir), 0);
	cr_assert_eq(sh("%s run %s/s.elide -w %s --tokens 1 --interp > /dev/null 2> %s/e1.txt", ELIDE_BIN, dir, s1, dir), 1);
	cr_assert_eq(sh("grep -q \"error: tensor 'model.layers.1.*' not found\" %s/e1.txt", dir), 0);
	/* the second shard, and a copy of it under another name: every tensor of it twice */
	cr_assert_eq(sh("cp %s %s/copy.safetensors", s2, dir), 0);
	cr_assert_eq(sh("%s compile %s/s.elide -w %s -w %s -w %s/copy.safetensors -o %s/out 2> %s/e2.txt", ELIDE_BIN, dir,
	                s1, s2, dir, dir, dir), 1);
	cr_assert_eq(sh("grep -q \"error: tensor 'model.norm.weight' is defined in both '%s' and '%s/copy.safetensors'\" %s/e2.txt",
	                s2, dir, dir), 0, "no error naming the tensor and both files");
}

Test(import, bert_classifier)
{
	mkwork();
	char bd[600];
	snprintf(bd, sizeof bd, "%s/bert", dir);
	mkdir(bd, 0777);
	char p[700];
	snprintf(p, sizeof p, "%s/config.json", bd);
	FILE *f = fopen(p, "w");
	cr_assert(f);
	fputs("{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\", \"hidden_size\": 32,\n"
	      " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 64, \"vocab_size\": 50,\n"
	      " \"max_position_embeddings\": 16, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\",\n"
	      " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}}\n", f);
	fclose(f);
	cr_assert_eq(sh("cp %s/tests/fixtures/bert_tiny.safetensors %s/model.safetensors", ELIDE_SOURCE_DIR, bd), 0);
	cr_assert_eq(sh("%s import %s -o %s/bert.elide", ELIDE_BIN, bd, dir), 0);
	size_t n;
	float *ref = ts_slurp(ELIDE_SOURCE_DIR "/tests/fixtures/bert_tiny.logits", &n);
	cr_assert_eq(n, 16 * 3 * sizeof(float));
	int32_t tok[16];
	FILE *tf = fopen(ELIDE_SOURCE_DIR "/tests/fixtures/bert_tiny.tokens", "r");
	cr_assert(tf);
	for (int i = 0; i < 16; i++) {
		cr_assert_eq(fscanf(tf, "%d", &tok[i]), 1);
		(void)fgetc(tf);
	}
	fclose(tf);
	static Diag d;
	diag_init(&d, stderr);
	snprintf(p, sizeof p, "%s/bert.elide", dir);
	Module *m = fe_load(p, NULL, &d);
	cr_assert(m);
	const char *w = bd;
	cr_assert(ir_load_weights(m, &w, 1, &d));
	TJit *t = tj_new(m, true);
	int (*fwd)(void *, const int32_t *, int32_t, float *) = (int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, "forward");
	double worst = 0;
	for (int len = 1; len <= 16; len++) {
		float out[3];
		cr_assert_eq(fwd(t->ctx, tok, len, out), ELIDE_OK);
		double e = ts_rel_err(out, ref + (len - 1) * 3, 3);
		worst = fmax(worst, e);
		cr_expect(e <= TOL, "bert %d tokens: relative error %g", len, e);
		cr_expect_eq(ts_argmax(out, 3), ts_argmax(ref + (len - 1) * 3, 3));
	}
	printf("import bert: compiled max relative error vs torch %.3g\n", worst);
	tj_free(t);
	ir_free_module(m);
	free(ref);
}

/* errors name the field; nothing is written */
Test(import, errors_name_the_field)
{
	mkwork();
	char bd[600];
	snprintf(bd, sizeof bd, "%s/bad", dir);
	mkdir(bd, 0777);
	struct { const char *config, *want; } cases[] = {
		{ "{\"model_type\": \"gpt_neox\"}", "field 'model_type' is 'gpt_neox'" },
		{ "{\"architectures\": [\"X\"]}", "field 'model_type' is missing" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 32}", "field 'num_hidden_layers' is missing" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
		  " \"intermediate_size\": 8, \"vocab_size\": 8, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
		  "field 'rope_scaling.rope_type' is 'yarn'" },
		{ "{\"model_type\": \"llama\", \"hidden_act\": \"gelu\"}", "field 'hidden_act' is 'gelu'" },
		{ "{\"model_type\": \"llama\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
		  " \"num_key_value_heads\": 3, \"intermediate_size\": 8, \"vocab_size\": 8}",
		  "field 'num_key_value_heads' (3) must divide 'num_attention_heads' (4)" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char p[700];
		snprintf(p, sizeof p, "%s/config.json", bd);
		FILE *f = fopen(p, "w");
		fputs(cases[i].config, f);
		fclose(f);
		cr_assert_eq(sh("%s import %s -o %s/x.elide 2> %s/err.txt", ELIDE_BIN, bd, dir, dir), 1, "case %zu", i);
		cr_expect_eq(sh("grep -qF \"%s\" %s/err.txt", cases[i].want, dir), 0, "case %zu: no '%s'", i, cases[i].want);
	}
	char p[700];
	snprintf(p, sizeof p, "%s/x.elide", dir);
	cr_expect_eq(access(p, F_OK), -1, "a failed import wrote its output");
}
