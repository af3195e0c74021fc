/* run_jit.c - the JIT backend of `elide run`: compiles the module for the host
 * (default<O3>), links it in process through ORC (jit.c), makes a context with the
 * packed weights and calls entries by name through their NAME_ENTRY__call
 * trampolines, sets knobs and reads the statistics through the generated API.
 * ELIDE_THREADS sets the kernel threads (runtime pool).  The runtime
 * functions the generated code calls are bound to the runtime linked into elide. */
#include "codegen/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct CgRun {
	Module *m;
	CgResult *r;
	CgJit *j;
	void *ctx;
	void (*destroy)(void *);
} CgRun;

uint32_t
cg_runtime_syms(CgJitSym *s, uint32_t cap)
{
	const CgJitSym all[] = {
		{ "elide_alloc_context", (CgFn)elide_alloc_context },
		{ "elide_blob_check", (CgFn)elide_blob_check },
		{ "elide_blob_open", (CgFn)elide_blob_open },
		{ "elide_blob_unmap", (CgFn)elide_blob_unmap },
		{ "elide_pool_create", (CgFn)elide_pool_create },
		{ "elide_pool_destroy", (CgFn)elide_pool_destroy },
		{ "elide_pool_parallel_for", (CgFn)elide_pool_parallel_for },
	};
	uint32_t n = 0;
	for (; n < cap && n < sizeof all / sizeof all[0]; n++)
		s[n] = all[n];
	return n;
}

void *
cg_run_open(Module *m, char *err, size_t nerr)
{
	Diag d;
	diag_init(&d, stderr);
	CgOptions o = { .opt_level = 3, .fuse = true };
	CgRun *run = xcalloc(1, sizeof *run);
	run->m = m;
	run->r = cg_compile(m, &o, &d);
	if (!run->r) {
		snprintf(err, nerr, "compilation failed");
		free(run);
		return NULL;
	}
	CgJitSym syms[8];
	uint32_t ns = cg_runtime_syms(syms, 8);
	if (!cg_optimize(run->r, 3, err, nerr) || !(run->j = cg_jit_new(run->r, syms, ns, err, nerr))) {
		cg_result_free(run->r);
		free(run);
		return NULL;
	}
	void *(*create)(void) = (void *(*)(void))cg_jit_lookup(run->j, "create");
	int (*load)(void *, const void *, size_t, uint64_t)
		= (int (*)(void *, const void *, size_t, uint64_t))cg_jit_lookup(run->j, "load_weights_mem_abi");
	int (*threads)(void *, int) = (int (*)(void *, int))cg_jit_lookup(run->j, "set_threads");
	run->destroy = (void (*)(void *))cg_jit_lookup(run->j, "destroy");
	run->ctx = create ? create() : NULL;
	const uint8_t *blob = cg_blob(run->r, err, nerr);
	if (!blob) {
		cg_run_close(run);
		return NULL;
	}
	int st = run->ctx ? load(run->ctx, blob, run->r->blob_size, run->r->abi_hash) : ELIDE_ERR_NOMEM;
	if (st == ELIDE_OK && getenv("ELIDE_THREADS"))
		st = threads(run->ctx, 0); /* the pool reads ELIDE_THREADS */
	if (st != ELIDE_OK) {
		snprintf(err, nerr, "cannot set up the compiled model (status %d)", st);
		cg_run_close(run);
		return NULL;
	}
	return run;
}

bool
cg_run_call(void *p, const char *entry, const int32_t *tokens, int64_t ntokens, int32_t pos, float *out,
            char *err, size_t nerr)
{
	CgRun *run = p;
	const Func *f = ir_find_func(run->m, entry);
	char name[256];
	snprintf(name, sizeof name, "%s__call", entry);
	int (*call)(void *, const int64_t *, void *) = f ? (int (*)(void *, const int64_t *, void *))cg_jit_lookup(run->j, name) : NULL;
	if (!call) {
		snprintf(err, nerr, "no entry '%s'", entry);
		return false;
	}
	int64_t argv[34];
	unsigned k = 0;
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		const Arg *a = &f->args[i];
		if (a->type.rank == 0) {
			bool is_pos = strcmp(a->name, "pos") == 0 || (i == 1 && a->type.rank == 0);
			argv[k++] = is_pos ? pos : (ntokens ? tokens[0] : 0);
		} else {
			argv[k++] = (int64_t)(intptr_t)tokens;
			argv[k++] = ntokens;
		}
	}
	int st = call(run->ctx, argv, out);
	if (st != ELIDE_OK) {
		snprintf(err, nerr, "'%s' returned status %d (%s)", entry, st, elide_status_str((elide_status)st));
		return false;
	}
	return true;
}

void
cg_run_close(void *p)
{
	CgRun *run = p;
	if (!run)
		return;
	if (run->ctx && run->destroy)
		run->destroy(run->ctx);
	cg_jit_free(run->j);
	cg_result_free(run->r);
	free(run);
}

bool
cg_run_set_knob(void *p, uint32_t knob, double v, char *err, size_t nerr)
{
	CgRun *run = p;
	int (*set)(void *, int, double) = (int (*)(void *, int, double))cg_jit_lookup(run->j, "set_knob");
	int st = set ? set(run->ctx, (int)knob, v) : ELIDE_ERR_ARG;
	if (st != ELIDE_OK) {
		snprintf(err, nerr, "cannot set knob %u to %g (status %d)", knob, v, st);
		return false;
	}
	return true;
}

void
cg_run_stats(void *p, int64_t *out3, int64_t *slots)
{
	CgRun *run = p;
	void (*get)(const void *, uint64_t *) = (void (*)(const void *, uint64_t *))cg_jit_lookup(run->j, "get_stats");
	int64_t (*stat)(const void *, int) = (int64_t(*)(const void *, int))cg_jit_lookup(run->j, "stat");
	uint64_t st[4] = { 0, 0, 0, 0 };
	if (get)
		get(run->ctx, st);
	for (int k = 0; k < 3; k++)
		out3[k] = (int64_t)st[k];
	for (uint32_t k = 0; k < run->m->nstats; k++)
		slots[k] = stat ? stat(run->ctx, (int)k) : 0;
}
