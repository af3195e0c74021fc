/* emit.c - optimisation (`default<O3>` through LLVMRunPasses) and the output files.
 * The files are made in memory, then written as one set (outset.c): the output
 * directory holds the complete old set or the complete new one, never a mix. */
#include "codegen/codegen.h"

#include <errno.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool
cg_optimize(CgResult *r, int opt_level, char *err, size_t nerr)
{
	char pipeline[32];
	snprintf(pipeline, sizeof pipeline, "default<O%d>", opt_level < 0 ? 0 : opt_level > 3 ? 3 : opt_level);
	LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
	LLVMPassBuilderOptionsSetLoopVectorization(po, opt_level >= 2);
	LLVMPassBuilderOptionsSetSLPVectorization(po, opt_level >= 2);
	LLVMPassBuilderOptionsSetLoopUnrolling(po, opt_level >= 2);
	LLVMErrorRef e = LLVMRunPasses(r->mod, pipeline, r->target->tm, po);
	LLVMDisposePassBuilderOptions(po);
	if (e) {
		char *msg = LLVMGetErrorMessage(e);
		snprintf(err, nerr, "optimisation failed: %s", msg);
		LLVMDisposeErrorMessage(msg);
		return false;
	}
	return true;
}

static bool
emit_machine(CgResult *r, LLVMCodeGenFileType kind, LLVMMemoryBufferRef *out, char *err, size_t nerr)
{
	char *msg = NULL;
	if (LLVMTargetMachineEmitToMemoryBuffer(r->target->tm, r->mod, kind, &msg, out)) {
		snprintf(err, nerr, "code generation failed: %s", msg ? msg : "");
		LLVMDisposeMessage(msg);
		return false;
	}
	return true;
}

bool
cg_write_outputs(CgResult *r, const char *dir, unsigned emit, const char *ir_text, Diag *d)
{
	char err[1024];
	CgOutFile files[8];
	LLVMMemoryBufferRef mbs[8] = { 0 };
	char *texts[8] = { 0 }, *lltext = NULL;
	int nf = 0;
	bool ok = true;
	const char *name = r->m->name;
	for (int k = 0; k < 7 && ok; k++) {
		unsigned bit = 1u << k;
		if (!(emit & bit))
			continue;
		const char *ext = bit == CG_EMIT_OBJ ? "o" : bit == CG_EMIT_ASM ? "s" : bit == CG_EMIT_LL ? "ll"
		                : bit == CG_EMIT_IR ? "eir" : bit == CG_EMIT_HEADER ? "h"
		                : bit == CG_EMIT_WEIGHTS ? "weights" : "json";
		CgOutFile *f = &files[nf];
		f->name = arena_printf(&r->m->arena, "%s.%s", name, ext);
		if (bit == CG_EMIT_OBJ || bit == CG_EMIT_ASM) {
			ok = emit_machine(r, bit == CG_EMIT_OBJ ? LLVMObjectFile : LLVMAssemblyFile, &mbs[nf], err, sizeof err);
			if (ok) {
				f->data = LLVMGetBufferStart(mbs[nf]);
				f->size = LLVMGetBufferSize(mbs[nf]);
			}
		} else if (bit == CG_EMIT_LL) {
			lltext = LLVMPrintModuleToString(r->mod);
			f->data = lltext;
			f->size = strlen(lltext);
		} else if (bit == CG_EMIT_IR) {
			f->data = ir_text ? ir_text : "";
			f->size = strlen(f->data);
		} else if (bit == CG_EMIT_HEADER || bit == CG_EMIT_MANIFEST) {
			texts[nf] = bit == CG_EMIT_HEADER ? cg_header_text(r) : cg_manifest_text(r);
			f->data = texts[nf];
			f->size = strlen(texts[nf]);
		} else {
			f->data = r->blob;
			f->size = r->blob_size;
		}
		nf++;
	}
	if (ok)
		ok = cg_write_set(dir, name, files, nf, err, sizeof err);
	if (!ok)
		diag_error(d, (Loc){ 0 }, "%s", err);
	for (int i = 0; i < nf; i++) {
		if (mbs[i])
			LLVMDisposeMemoryBuffer(mbs[i]);
		free(texts[i]);
	}
	if (lltext)
		LLVMDisposeMessage(lltext);
	return ok;
}
