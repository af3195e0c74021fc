/* cg_jit_support.h - helpers shared by the codegen tests: compile a Module in
 * process (cg_compile + default<O3> + ORC), runtime stand-ins for the JIT, a
 * two-way parallel-for that runs chunks in reverse order, and an op count. */
#ifndef ELIDE_CG_JIT_SUPPORT_H
#define ELIDE_CG_JIT_SUPPORT_H

#include "codegen/codegen.h"

typedef struct TJit {
	CgResult *r;
	CgJit *j;
	void *ctx;
} TJit;

/* Compiles m for the host and JITs it; the context has the weights loaded. */
TJit *tj_new(Module *m, bool fuse);
/* The same with the code generator's options (target features, int8 activations). */
TJit *tj_new_opts(Module *m, const CgOptions *o);
void tj_free(TJit *t);
CgFn tj_sym(TJit *t, const char *name);
/* The parallel-for the tests install: chunks of the range, last chunk first. */
void tj_reverse_pfor(void *pool, int64_t n, void (*fn)(void *, int64_t, int64_t), void *ctx);

/* The ops of code opcode in all of m's entries. */
int tj_count_ops(const Module *m, Opcode code);

#endif
