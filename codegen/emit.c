/* emit.c - optimisation (`default<O3>` through LLVMRunPasses) and the output files.
 * The files are made in memory, then written as one set (outset.c): the output
 * directory holds the complete old set or the complete new one, never a mix.  The
 * object and the weight blob are not held in memory: they are written into the set's
 * private staging directory, the object straight from LLVM and the blob streamed
 * from the params (pack.c).  Embedded weights on ELF are a zero-filled section that
 * LLVM emits cheaply (a fill, not data); the blob is then written over it in the
 * staged object file. */
#include "codegen/codegen.h"

#include <errno.h>
#include <fcntl.h>
#include <llvm-c/ErrorHandling.h>
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

static uint64_t
rd_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static bool
pread_all(int fd, void *buf, size_t n, uint64_t at)
{
	for (uint8_t *p = buf; n;) {
		ssize_t k = pread(fd, p, n, (off_t)at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		p += k;
		n -= (size_t)k;
		at += (uint64_t)k;
	}
	return true;
}

/* The file offset of section CG_EMBED_SECTION in an ELF object (32 or 64 bit,
 * little-endian), checking that its size is `size`; 0 with a message if absent. */
static uint64_t
elf_embed_offset(int fd, uint64_t size, char *err, size_t nerr)
{
	uint8_t eh[64];
	if (!pread_all(fd, eh, sizeof eh, 0) || memcmp(eh, "\177ELF", 4) != 0 || eh[5] != 1) {
		snprintf(err, nerr, "embedded weights: the object is not a little-endian ELF file");
		return 0;
	}
	bool is64 = eh[4] == 2;
	uint64_t shoff = is64 ? rd_le(eh + 40, 8) : rd_le(eh + 32, 4);
	unsigned shentsize = (unsigned)rd_le(eh + (is64 ? 58 : 46), 2);
	unsigned shnum = (unsigned)rd_le(eh + (is64 ? 60 : 48), 2), shstrndx = (unsigned)rd_le(eh + (is64 ? 62 : 50), 2);
	if (shentsize < (is64 ? 64u : 40u) || shentsize > 128 || shstrndx >= shnum) {
		snprintf(err, nerr, "embedded weights: unexpected ELF section table");
		return 0;
	}
	uint8_t *sh = xmalloc((size_t)shnum * shentsize);
	uint64_t found = 0;
	if (pread_all(fd, sh, (size_t)shnum * shentsize, shoff)) {
		const uint8_t *ss = sh + (size_t)shstrndx * shentsize;
		uint64_t str_off = is64 ? rd_le(ss + 24, 8) : rd_le(ss + 16, 4);
		uint64_t str_size = is64 ? rd_le(ss + 32, 8) : rd_le(ss + 20, 4);
		char *strs = str_size < (1u << 24) ? xmalloc(str_size + 1) : NULL;
		if (strs && pread_all(fd, strs, str_size, str_off)) {
			strs[str_size] = 0;
			for (unsigned i = 0; i < shnum && !found; i++) {
				const uint8_t *s = sh + (size_t)i * shentsize;
				uint64_t name = rd_le(s, 4);
				uint64_t off = is64 ? rd_le(s + 24, 8) : rd_le(s + 16, 4);
				uint64_t sz = is64 ? rd_le(s + 32, 8) : rd_le(s + 20, 4);
				if (name < str_size && strcmp(strs + name, CG_EMBED_SECTION) == 0 && sz == size && off)
					found = off;
			}
		}
		free(strs);
	}
	free(sh);
	if (!found)
		snprintf(err, nerr, "embedded weights: section '%s' of %llu bytes not found in the object",
		         CG_EMBED_SECTION, (unsigned long long)size);
	return found;
}

/* The argument of the writers: the result and the file's name in messages. */
typedef struct WriterArg {
	CgResult *r;
	const char *shown;        /* "DIR/NAME.o" */
} WriterArg;

/* The file LLVM is writing, for on_llvm_fatal. */
static const char *llvm_file;

/* LLVM ends the process on an output error (a full disk): the message in elide's
 * words, and the staging directory removed, so the output set stays whole. */
static void
on_llvm_fatal(const char *reason)
{
	static const char io[] = "IO failure on output stream: ";
	if (strncmp(reason, io, sizeof io - 1) == 0)
		reason += sizeof io - 1;
	fprintf(stderr, "elide: error: cannot write '%s': %s\n", llvm_file ? llvm_file : "?", reason);
	cg_write_set_abandon();
	_exit(1);
}

/* CgOutWriter of NAME.o: the object written straight to its staged file by LLVM;
 * with a reserved weights section, the blob is then streamed into it. */
static bool
write_object(void *arg, int fd, const char *path, char *err, size_t nerr)
{
	const WriterArg *wa = arg;
	CgResult *r = wa->r;
	char *msg = NULL;
	bool ok = true;
	phase_begin_long(r->phases, "emission");
	llvm_file = wa->shown;
	LLVMInstallFatalErrorHandler(on_llvm_fatal);
	if (LLVMTargetMachineEmitToFile(r->target->tm, r->mod, (char *)path, LLVMObjectFile, &msg)) {
		snprintf(err, nerr, "code generation failed: %s", msg ? msg : "");
		ok = false;
	}
	LLVMResetFatalErrorHandler();
	llvm_file = NULL;
	LLVMDisposeMessage(msg);
	if (ok && r->embed_patch) {
		phase_begin(r->phases, "packing");
		uint64_t at = elf_embed_offset(fd, r->blob_size, err, nerr);
		ok = at && cg_blob_write(r, fd, at, wa->shown, r->phases, err, nerr);
	}
	return ok;
}

/* CgOutWriter of NAME.weights: streamed from the params. */
static bool
write_weights(void *arg, int fd, const char *path, char *err, size_t nerr)
{
	const WriterArg *wa = arg;
	(void)path;
	phase_begin(wa->r->phases, "packing");
	return cg_blob_write(wa->r, fd, 0, wa->shown, wa->r->phases, err, nerr);
}

bool
cg_write_outputs(CgResult *r, const char *dir, unsigned emit, const char *ir_text, Diag *d)
{
	char err[1024];
	CgOutFile files[8];
	WriterArg wargs[8];
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
		f->data = NULL;
		f->size = 0;
		f->write = NULL;
		f->arg = NULL;
		if (bit != CG_EMIT_OBJ && bit != CG_EMIT_WEIGHTS)
			phase_begin(r->phases, bit == CG_EMIT_ASM || bit == CG_EMIT_LL ? "emission" : "header, manifest");
		if (bit == CG_EMIT_OBJ || bit == CG_EMIT_WEIGHTS) {
			/* written in the staging directory (cg_write_set) */
			f->write = bit == CG_EMIT_OBJ ? write_object : write_weights;
			wargs[nf] = (WriterArg){ r, arena_printf(&r->m->arena, "%s/%s", dir, f->name) };
			f->arg = &wargs[nf];
		} else if (bit == CG_EMIT_ASM) {
			ok = emit_machine(r, LLVMAssemblyFile, &mbs[nf], err, sizeof err);
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
		}
		nf++;
	}
	if (ok)
		ok = cg_write_set(dir, name, files, nf, err, sizeof err);
	phase_end(r->phases);
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
