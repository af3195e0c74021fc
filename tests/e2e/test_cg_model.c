/* test_cg_model.c - compiled tiny random Llamas (MHA and GQA, built with
 * rm_build_module) against the reference interpreter, in process through the JIT:
 * 64 decode steps and prefill (max relative error <= 1e-4, identical argmax), the
 * parallel-for hook, two contexts in one process, and hostile inputs answered with
 * status codes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"
#include "tests/support/slurp.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);
typedef int (*ResetFn)(void *);
typedef void (*SetPforFn)(void *, void *, void *);

static Module *
load_model(RmConfig c, char *path, size_t npath)
{
	snprintf(path, npath, "/tmp/elide_cg_model_%d_%llu.safetensors", (int)getpid(), (unsigned long long)c.seed);
	cr_assert(rm_write_model(&c, path));
	Module *m = rm_build_module(&c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d), "cannot load params");
	return m;
}

/* prefill of `np` tokens, then decode steps up to `nsteps` positions in all, on
 * both the compiled model and the interpreter. */
static void
run_compare(RmConfig c, int np, int nsteps, bool hook)
{
	char path[256];
	Module *m = load_model(c, path, sizeof path);
	TJit *t = tj_new(m, true);
	if (hook) {
		void (*pf)(void *, int64_t, void (*)(void *, int64_t, int64_t), void *) = tj_reverse_pfor;
		void *pfp;
		memcpy(&pfp, &pf, sizeof pfp);
		((SetPforFn)tj_sym(t, "set_parallel_for"))(t->ctx, pfp, NULL);
	}
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	InterpState *is = interp_new(m);
	float *out = xmalloc((size_t)c.vocab * sizeof *out), *ref = xmalloc((size_t)c.vocab * sizeof *ref);
	char err[256];
	int32_t toks[64];
	for (int i = 0; i < 64; i++)
		toks[i] = (int32_t)((i * 37 + 11) % c.vocab);
	int pos = 0;
	if (np > 0) {
		cr_assert_eq(prefill(t->ctx, toks, np, 0, out), ELIDE_OK);
		cr_assert(interp_run(is, "prefill", toks, np, 0, ref, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref, c.vocab);
		cr_assert(e <= 1e-4, "prefill of %d: relative error %g", np, e);
		cr_assert_eq(ts_argmax(out, c.vocab), ts_argmax(ref, c.vocab));
		pos = np;
	}
	int32_t tok = (int32_t)ts_argmax(ref, c.vocab);
	if (np == 0)
		tok = toks[0];
	for (; pos < nsteps; pos++) {
		cr_assert_eq(step(t->ctx, tok, pos, out), ELIDE_OK);
		cr_assert(interp_run(is, "step", &tok, 1, pos, ref, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref, c.vocab);
		cr_assert(e <= 1e-4, "step at %d: relative error %g", pos, e);
		cr_assert_eq(ts_argmax(out, c.vocab), ts_argmax(ref, c.vocab), "argmax at %d", pos);
		tok = (int32_t)((ts_argmax(ref, c.vocab) + pos) % c.vocab);
	}
	free(out);
	free(ref);
	interp_free(is);
	tj_free(t);
	ir_free_module(m);
	remove(path);
}

Test(cg_model, gqa_decode_64)
{
	run_compare(rm_default_config(), 0, 64, false);
}

Test(cg_model, mha_decode_64)
{
	RmConfig c = rm_default_config();
	c.kv_heads = c.heads;
	c.seed = 2;
	run_compare(c, 0, 64, false);
}

Test(cg_model, gqa_prefill_then_decode)
{
	RmConfig c = rm_default_config();
	c.seed = 3;
	run_compare(c, 13, 40, false);
	run_compare(c, 64, 64, false);
}

Test(cg_model, mha_prefill_with_hook)
{
	RmConfig c = rm_default_config();
	c.kv_heads = c.heads;
	c.seed = 4;
	run_compare(c, 9, 30, true);
}

/* Odd sizes: a KV row of 2 x 2 floats and 7 positions (112 bytes) is padded to 128
 * in the state; the compiled code, the runtime's elide_kv_layout_of and the header
 * agree on it, and the model still follows the interpreter. */
Test(cg_model, padded_kv_layout)
{
	RmConfig c = rm_default_config();
	c.dim = 8;
	c.heads = 4;
	c.kv_heads = 2;
	c.ffn = 20;
	c.ctx = 7;
	c.vocab = 40;
	c.seed = 9;
	char path[256];
	Module *m = load_model(c, path, sizeof path);
	TJit *t = tj_new(m, true);
	uint64_t off = 0;
	for (uint32_t i = 0; i < m->nstates; i++) {
		elide_kv_layout l = elide_kv_layout_of(m->states[i].ctx, m->states[i].kv_heads, m->states[i].head_dim,
		                                       m->states[i].page);
		cr_assert_eq(l.v_offset, 128u);
		cr_assert_eq(t->r->state_off[i], off, "cache %u", i);
		off += l.bytes;
	}
	cr_assert_eq(t->r->state_size, off);
	char *h = cg_header_text(t->r);
	char want[128];
	snprintf(want, sizeof want, "#define LLAMA_STATE_SIZE %lluULL", (unsigned long long)off);
	cr_assert(strstr(h, want), "%s", h);
	free(h);
	tj_free(t);
	ir_free_module(m);
	remove(path);
	run_compare(c, 5, 7, false);
}

Test(cg_model, two_contexts_agree)
{
	char path[256];
	RmConfig c = rm_default_config();
	c.seed = 5;
	Module *m = load_model(c, path, sizeof path);
	TJit *t = tj_new(m, true);
	void *(*create)(void) = (void *(*)(void))tj_sym(t, "create");
	int (*load)(void *, const void *, size_t, uint64_t)
		= (int (*)(void *, const void *, size_t, uint64_t))tj_sym(t, "load_weights_mem_abi");
	void (*destroy)(void *) = (void (*)(void *))tj_sym(t, "destroy");
	StepFn step = (StepFn)tj_sym(t, "step");
	void *b = create();
	cr_assert_eq(load(b, t->r->blob, t->r->blob_size, t->r->abi_hash), ELIDE_OK);
	float *oa = xmalloc((size_t)c.vocab * 4), *ob = xmalloc((size_t)c.vocab * 4);
	for (int pos = 0; pos < 20; pos++) {
		/* interleaved: a runs a different sequence in between to show no sharing */
		cr_assert_eq(step(t->ctx, (pos * 3) % c.vocab, pos, oa), ELIDE_OK);
		cr_assert_eq(step(b, (pos * 3) % c.vocab, pos, ob), ELIDE_OK);
		cr_assert(memcmp(oa, ob, (size_t)c.vocab * 4) == 0, "contexts differ at %d", pos);
	}
	destroy(b);
	free(oa);
	free(ob);
	tj_free(t);
	ir_free_module(m);
	remove(path);
}

Test(cg_model, hostile_inputs)
{
	char path[256];
	RmConfig c = rm_default_config();
	c.seed = 6;
	Module *m = load_model(c, path, sizeof path);
	TJit *t = tj_new(m, true);
	int (*load)(void *, const void *, size_t, uint64_t)
		= (int (*)(void *, const void *, size_t, uint64_t))tj_sym(t, "load_weights_mem_abi");
	int (*loadf)(void *, const char *, uint64_t) = (int (*)(void *, const char *, uint64_t))tj_sym(t, "load_weights_abi");
	void *(*create)(void) = (void *(*)(void))tj_sym(t, "create");
	void (*destroy)(void *) = (void (*)(void *))tj_sym(t, "destroy");
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	float *out = xmalloc((size_t)c.vocab * 4);
	int32_t toks[65] = { 0 };
	cr_assert_eq(step(t->ctx, c.vocab, 0, out), ELIDE_ERR_TOKEN);
	cr_assert_eq(step(t->ctx, -1, 0, out), ELIDE_ERR_TOKEN);
	cr_assert_eq(step(t->ctx, 1, c.ctx, out), ELIDE_ERR_POS);
	cr_assert_eq(step(t->ctx, 1, -1, out), ELIDE_ERR_POS);
	cr_assert_eq(step(NULL, 1, 0, out), ELIDE_ERR_ARG);
	cr_assert_eq(step(t->ctx, 1, 0, NULL), ELIDE_ERR_ARG);
	cr_assert_eq(prefill(t->ctx, toks, c.ctx + 1, 0, out), ELIDE_ERR_SEQ_LEN);
	cr_assert_eq(prefill(t->ctx, toks, 0, 0, out), ELIDE_ERR_SEQ_LEN);
	cr_assert_eq(prefill(t->ctx, toks, 10, c.ctx - 5, out), ELIDE_ERR_POS);
	toks[3] = c.vocab + 7;
	cr_assert_eq(prefill(t->ctx, toks, 10, 0, out), ELIDE_ERR_TOKEN);
	/* weights: a fresh context refuses to run, then bad blobs */
	void *b = create();
	cr_assert_eq(step(b, 1, 0, out), ELIDE_ERR_NO_WEIGHTS);
	size_t n = t->r->blob_size;
	uint8_t *blob = aligned_alloc(64, (n + 63) & ~(size_t)63);
	memcpy(blob, t->r->blob, n);
	cr_assert_eq(load(b, blob, n - 1, t->r->abi_hash), ELIDE_ERR_BLOB_SIZE, "truncated");
	cr_assert_eq(load(b, blob, 10, t->r->abi_hash), ELIDE_ERR_BLOB_SIZE, "truncated header");
	blob[n - 5] ^= 0x40;
	cr_assert_eq(load(b, blob, n, t->r->abi_hash), ELIDE_ERR_BLOB_CHECKSUM, "flipped bit");
	blob[n - 5] ^= 0x40;
	blob[0] ^= 1;
	cr_assert_eq(load(b, blob, n, t->r->abi_hash), ELIDE_ERR_BLOB_MAGIC, "wrong magic");
	blob[0] ^= 1;
	cr_assert_eq(loadf(b, "/nonexistent/x.weights", t->r->abi_hash), ELIDE_ERR_IO);
	/* a header of another compile: its ABI hash differs, whatever the blob */
	blob[0] ^= 1;
	cr_assert_eq(load(b, blob, n, t->r->abi_hash ^ 1), ELIDE_ERR_ABI, "ABI hash of another header");
	blob[0] ^= 1;
	cr_assert_eq(load(b, blob, n, t->r->abi_hash + 2), ELIDE_ERR_ABI, "ABI hash of another header");
	cr_assert_eq(loadf(b, "/nonexistent/x.weights", 0), ELIDE_ERR_ABI);
	cr_assert_eq(step(b, 1, 0, out), ELIDE_ERR_NO_WEIGHTS);
	cr_assert_eq(step(b, 1, 0, out), ELIDE_ERR_NO_WEIGHTS);
	/* the blob of another model (one more layer) */
	RmConfig c2 = c;
	c2.layers = 3;
	c2.seed = 7;
	char path2[256];
	Module *m2 = load_model(c2, path2, sizeof path2);
	Diag d;
	diag_init(&d, stderr);
	CgOptions o = { .opt_level = 0, .fuse = true };
	CgResult *r2 = cg_compile(m2, &o, &d);
	cr_assert(r2);
	char berr[256];
	cr_assert(cg_blob(r2, berr, sizeof berr), "%s", berr);
	cr_assert_eq(load(b, r2->blob, r2->blob_size, t->r->abi_hash), ELIDE_ERR_BLOB_MODEL);
	char wpath[300];
	snprintf(wpath, sizeof wpath, "%s.weights", path2);
	char err[256];
	cr_assert(cg_write_file(wpath, r2->blob, r2->blob_size, err, sizeof err), "%s", err);
	cr_assert_eq(loadf(b, wpath, t->r->abi_hash), ELIDE_ERR_BLOB_MODEL);
	cr_assert(cg_write_file(wpath, t->r->blob, t->r->blob_size, err, sizeof err), "%s", err);
	cr_assert_eq(loadf(b, wpath, t->r->abi_hash), ELIDE_OK);
	cr_assert_eq(step(b, 1, 0, out), ELIDE_OK);
	remove(wpath);
	cg_result_free(r2);
	ir_free_module(m2);
	remove(path2);
	destroy(b);
	free(blob);
	free(out);
	tj_free(t);
	ir_free_module(m);
	remove(path);
}

Test(cg_model, one_and_two_threads_agree)
{
	char path[256];
	RmConfig c = rm_default_config();
	c.seed = 8;
	Module *m = load_model(c, path, sizeof path);
	TJit *t = tj_new(m, true);
	int (*threads)(void *, int) = (int (*)(void *, int))tj_sym(t, "set_threads");
	ResetFn reset = (ResetFn)tj_sym(t, "reset");
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	enum { NSTEP = 24 };
	float *o1 = xmalloc((size_t)(NSTEP + 1) * (size_t)c.vocab * 4), *o2 = xmalloc((size_t)(NSTEP + 1) * (size_t)c.vocab * 4);
	int32_t toks[40];
	for (int i = 0; i < 40; i++)
		toks[i] = (int32_t)((i * 13 + 1) % c.vocab);
	for (int nt = 1; nt <= 2; nt++) {
		float *o = nt == 1 ? o1 : o2;
		cr_assert_eq(threads(t->ctx, nt), ELIDE_OK);
		cr_assert_eq(reset(t->ctx), ELIDE_OK);
		cr_assert_eq(prefill(t->ctx, toks, 16, 0, o), ELIDE_OK);
		for (int i = 0; i < NSTEP; i++)
			cr_assert_eq(step(t->ctx, toks[16 + i], 16 + i, o + (size_t)(i + 1) * (size_t)c.vocab), ELIDE_OK);
	}
	cr_assert(memcmp(o1, o2, (size_t)(NSTEP + 1) * (size_t)c.vocab * 4) == 0, "1 and 2 threads differ");
	cr_assert_eq(threads(t->ctx, 1), ELIDE_OK);
	free(o1);
	free(o2);
	tj_free(t);
	ir_free_module(m);
	remove(path);
}

Test(cg_model, pruned_heterogeneous_layers)
{
	/* prune-structured leaves every layer with its own FFN width and KV groups: the
	 * kernels are specialised per layer and must still match the interpreter run of
	 * the same pruned module */
	RmConfig c = rm_default_config();
	c.layers = 3;
	c.seed = 31;
	char path[256];
	snprintf(path, sizeof path, "/tmp/elide_cg_pruned_%d.safetensors", (int)getpid());
	cr_assert(rm_write_model(&c, path));
	char *src = rm_elide_source(&c, "llama");
	const char *pol = "\npolicy p for llama {\n  prune ffn_neuron keep 0.45 score l2 layers 0..2;\n"
	                  "  prune kv_group keep 1/2 score l2 layers 1..3;\n}\n";
	size_t n = strlen(src) + strlen(pol) + 1;
	char *text = xmalloc(n);
	snprintf(text, n, "%s%s", src, pol);
	static Diag d;
	diag_init(&d, stderr);
	Module *m = fe_load_text("pruned.elide", text, strlen(text), "p", &d);
	cr_assert(m, "the pruned model does not load");
	cr_assert(ir_load_params(m, path, &d));
	cr_assert(pass_run_default(m, &d) && ir_verify(m, &d));
	/* the widths really differ between layers */
	int32_t w1a = ir_find_param(m, "w1.0"), w1b = ir_find_param(m, "w1.1");
	int32_t wka = ir_find_param(m, "wk.0"), wkb = ir_find_param(m, "wk.1");
	cr_assert(w1a >= 0 && w1b >= 0 && wka >= 0 && wkb >= 0);
	cr_assert_neq(m->params[w1a].type.dims[0], m->params[w1b].type.dims[0]);
	cr_assert_neq(m->params[wka].type.dims[0], m->params[wkb].type.dims[0]);
	TJit *t = tj_new(m, true);
	StepFn step = (StepFn)tj_sym(t, "step");
	PrefillFn prefill = (PrefillFn)tj_sym(t, "prefill");
	InterpState *is = interp_new(m);
	float *out = xmalloc((size_t)c.vocab * 4), *ref = xmalloc((size_t)c.vocab * 4);
	char err[256];
	int32_t toks[12];
	for (int i = 0; i < 12; i++)
		toks[i] = (int32_t)((i * 19 + 4) % c.vocab);
	cr_assert_eq(prefill(t->ctx, toks, 12, 0, out), ELIDE_OK);
	cr_assert(interp_run(is, "prefill", toks, 12, 0, ref, err, sizeof err), "%s", err);
	cr_assert(ts_rel_err(out, ref, c.vocab) <= 1e-4);
	for (int pos = 12; pos < 40; pos++) {
		int32_t tok = (int32_t)((pos * 5) % c.vocab);
		cr_assert_eq(step(t->ctx, tok, pos, out), ELIDE_OK);
		cr_assert(interp_run(is, "step", &tok, 1, pos, ref, err, sizeof err), "%s", err);
		double e = ts_rel_err(out, ref, c.vocab);
		cr_assert(e <= 1e-4, "step at %d: relative error %g", pos, e);
		cr_assert_eq(ts_argmax(out, c.vocab), ts_argmax(ref, c.vocab));
	}
	free(out);
	free(ref);
	free(text);
	free(src);
	interp_free(is);
	tj_free(t);
	ir_free_module(m);
	remove(path);
}

/* The blob written to NAME.weights (streamed from the params) and the one written
 * into the object's reserved section with --embed-weights are byte for byte the blob
 * built in memory. */
Test(cg_model, streamed_blob_equals_memory)
{
	char path[256];
	RmConfig c = rm_default_config();
	c.seed = 9;
	Module *m = load_model(c, path, sizeof path);
	Diag d;
	diag_init(&d, stderr);
	char dir[300], err[512], file[400];
	snprintf(dir, sizeof dir, "%s.out", path);
	cr_assert(mkdir(dir, 0777) == 0);
	for (int embed = 0; embed < 2; embed++) {
		CgOptions o = { .opt_level = 0, .fuse = true, .embed_weights = embed, .embed_patch = embed };
		CgResult *r = cg_compile(m, &o, &d);
		cr_assert(r);
		cr_assert_eq(r->embed_patch, (bool)embed);
		cr_assert_null(r->blob, "cg_compile does not build the blob in memory");
		unsigned emit = embed ? CG_EMIT_OBJ : CG_EMIT_WEIGHTS;
		cr_assert(cg_write_outputs(r, dir, emit, NULL, &d));
		const uint8_t *blob = cg_blob(r, err, sizeof err);
		cr_assert(blob, "%s", err);
		snprintf(file, sizeof file, "%s/llama.%s", dir, embed ? "o" : "weights");
		size_t n = 0;
		uint8_t *bytes = (uint8_t *)ts_slurp(file, &n);
		cr_assert(bytes);
		if (!embed) {
			cr_assert_eq(n, r->blob_size);
			cr_assert(memcmp(bytes, blob, n) == 0, "NAME.weights differs from the blob");
		} else {
			bool found = false; /* 64-aligned in the object, exactly once */
			for (size_t at = 0; at + r->blob_size <= n && !found; at += 64)
				found = memcmp(bytes + at, blob, r->blob_size) == 0;
			cr_assert(found, "the object does not hold the blob");
		}
		free(bytes);
		remove(file);
		cg_result_free(r);
	}
	rmdir(dir);
	ir_free_module(m);
	remove(path);
}
