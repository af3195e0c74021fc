/* jit.c - in-process execution of a compiled model through ORC's LLJIT (for
 * `elide run` and tests).  The module is optimised and turned into a host object by
 * the same target machine as `elide compile`, so the JIT runs exactly the code an
 * ahead-of-time build would link; LLJIT only links that object.  Runtime functions
 * are defined as absolute symbols from the caller's table; everything else (libc,
 * libm) resolves against the process. */
#include "codegen/codegen.h"

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct CgJit {
	LLVMOrcLLJITRef j;
	char prefix[64];
};

static void
err_msg(LLVMErrorRef e, const char *what, char *err, size_t nerr)
{
	char *m = LLVMGetErrorMessage(e);
	snprintf(err, nerr, "%s: %s", what, m);
	LLVMDisposeErrorMessage(m);
}

CgJit *
cg_jit_new(CgResult *r, const CgJitSym *syms, uint32_t nsyms, char *err, size_t nerr)
{
	if (!r->target->is_host) {
		snprintf(err, nerr, "the JIT runs host code only, not '%s'", r->target->triple);
		return NULL;
	}
	char *msg = NULL;
	LLVMMemoryBufferRef obj;
	if (LLVMTargetMachineEmitToMemoryBuffer(r->target->tm, r->mod, LLVMObjectFile, &msg, &obj)) {
		snprintf(err, nerr, "code generation failed: %s", msg ? msg : "");
		LLVMDisposeMessage(msg);
		return NULL;
	}
	CgJit *jit = xcalloc(1, sizeof *jit);
	LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
	LLVMErrorRef e = LLVMOrcCreateLLJIT(&jit->j, jb);
	if (e) {
		err_msg(e, "cannot create the JIT", err, nerr);
		LLVMDisposeMemoryBuffer(obj);
		free(jit);
		return NULL;
	}
	LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit->j);
	char gp = LLVMOrcLLJITGetGlobalPrefix(jit->j);
	LLVMOrcDefinitionGeneratorRef gen;
	e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, gp, NULL, NULL);
	if (e) {
		err_msg(e, "cannot search the process for symbols", err, nerr);
		goto fail;
	}
	LLVMOrcJITDylibAddGenerator(jd, gen);
	if (nsyms) {
		LLVMOrcCSymbolMapPair *pairs = xcalloc(nsyms, sizeof *pairs);
		for (uint32_t i = 0; i < nsyms; i++) {
			pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit->j, syms[i].name);
			uintptr_t u;
			memcpy(&u, &syms[i].addr, sizeof u);
			pairs[i].Sym.Address = (LLVMOrcExecutorAddress)u;
			pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable;
		}
		LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, nsyms);
		free(pairs);
		e = LLVMOrcJITDylibDefine(jd, mu);
		if (e) {
			err_msg(e, "cannot define runtime symbols", err, nerr);
			goto fail;
		}
	}
	e = LLVMOrcLLJITAddObjectFile(jit->j, jd, obj);
	obj = NULL;
	if (e) {
		err_msg(e, "cannot add the object to the JIT", err, nerr);
		goto fail;
	}
	snprintf(jit->prefix, sizeof jit->prefix, "%s_", r->m->name);
	return jit;
fail:
	if (obj)
		LLVMDisposeMemoryBuffer(obj);
	LLVMOrcDisposeLLJIT(jit->j);
	free(jit);
	return NULL;
}

CgFn
cg_jit_lookup(CgJit *j, const char *name)
{
	char full[256];
	snprintf(full, sizeof full, "%s%s", j->prefix, name);
	LLVMOrcExecutorAddress a = 0;
	LLVMErrorRef e = LLVMOrcLLJITLookup(j->j, &a, full);
	if (e) {
		LLVMConsumeError(e);
		return NULL;
	}
	CgFn fn;
	_Static_assert(sizeof fn == sizeof(uintptr_t), "function pointers are addresses");
	uintptr_t u = (uintptr_t)a;
	memcpy(&fn, &u, sizeof fn);
	return fn;
}

void
cg_jit_free(CgJit *j)
{
	if (!j)
		return;
	LLVMOrcDisposeLLJIT(j->j);
	free(j);
}
