/* emit.c - optimisation (`default<O3>` through LLVMRunPasses) and the output files.
 * Every file goes to a temporary name in the output directory and is renamed once
 * complete; if any output fails, the ones already renamed are removed again, so a
 * failed compile leaves nothing behind. */
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

bool
cg_write_file(const char *path, const void *data, size_t n, char *err, size_t nerr)
{
	size_t len = strlen(path);
	char *tmp = xmalloc(len + 32);
	snprintf(tmp, len + 32, "%s.tmp.%ld", path, (long)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		free(tmp);
		return false;
	}
	bool ok = fwrite(data, 1, n, f) == n;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, path) != 0) {
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		remove(tmp);
		free(tmp);
		return false;
	}
	free(tmp);
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
	char *done[8];
	int ndone = 0;
	bool ok = true;
	const char *name = r->m->name;
	for (int k = 0; k < 7 && ok; k++) {
		unsigned bit = 1u << k;
		if (!(emit & bit))
			continue;
		const char *ext = bit == CG_EMIT_OBJ ? "o" : bit == CG_EMIT_ASM ? "s" : bit == CG_EMIT_LL ? "ll"
		                : bit == CG_EMIT_IR ? "eir" : bit == CG_EMIT_HEADER ? "h"
		                : bit == CG_EMIT_WEIGHTS ? "weights" : "json";
		size_t plen = strlen(dir) + strlen(name) + strlen(ext) + 4;
		char *path = xmalloc(plen);
		snprintf(path, plen, "%s/%s.%s", dir, name, ext);
		LLVMMemoryBufferRef mb = NULL;
		char *text = NULL;
		const void *data = NULL;
		size_t n = 0;
		if (bit == CG_EMIT_OBJ || bit == CG_EMIT_ASM) {
			ok = emit_machine(r, bit == CG_EMIT_OBJ ? LLVMObjectFile : LLVMAssemblyFile, &mb, err, sizeof err);
			if (ok) {
				data = LLVMGetBufferStart(mb);
				n = LLVMGetBufferSize(mb);
			}
		} else if (bit == CG_EMIT_LL) {
			text = LLVMPrintModuleToString(r->mod);
			data = text;
			n = strlen(text);
		} else if (bit == CG_EMIT_IR) {
			data = ir_text ? ir_text : "";
			n = strlen(data);
		} else if (bit == CG_EMIT_HEADER) {
			text = cg_header_text(r);
			data = text;
			n = strlen(text);
		} else if (bit == CG_EMIT_WEIGHTS) {
			data = r->blob;
			n = r->blob_size;
		} else {
			text = cg_manifest_text(r);
			data = text;
			n = strlen(text);
		}
		if (ok)
			ok = cg_write_file(path, data, n, err, sizeof err);
		if (mb)
			LLVMDisposeMemoryBuffer(mb);
		if (bit == CG_EMIT_LL)
			LLVMDisposeMessage(text);
		else if (bit == CG_EMIT_HEADER || bit == CG_EMIT_MANIFEST)
			free(text);
		if (ok)
			done[ndone++] = path;
		else
			free(path);
	}
	if (!ok) {
		diag_error(d, (Loc){ 0 }, "%s", err);
		for (int i = 0; i < ndone; i++)
			remove(done[i]);
	}
	for (int i = 0; i < ndone; i++)
		free(done[i]);
	return ok;
}
