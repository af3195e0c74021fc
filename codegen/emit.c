/* emit.c - optimisation (`default<O3>` through LLVMRunPasses) and the output files.
 * Every file goes to a temporary name in the output directory and is renamed once
 * complete; if any output fails, the ones already renamed are removed again, so a
 * failed compile leaves nothing behind.  The object goes to disk straight from LLVM
 * and the weight blob is streamed from the params (pack.c): neither is held whole in
 * memory.  Embedded weights on ELF are a zero-filled section that LLVM emits cheaply
 * (a fill, not data); the blob is then written over it in the object file. */
#include "codegen/codegen.h"

#include <errno.h>
#include <fcntl.h>
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

static char *
tmp_name(const char *path)
{
	size_t len = strlen(path) + 32;
	char *tmp = xmalloc(len);
	snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
	return tmp;
}

/* The object file written straight to disk by LLVM; with a reserved weights section,
 * the blob is then streamed into it. */
static bool
write_object(CgResult *r, const char *path, char *err, size_t nerr)
{
	char *tmp = tmp_name(path), *msg = NULL;
	bool ok = true;
	phase_begin_long(r->phases, "emission");
	if (LLVMTargetMachineEmitToFile(r->target->tm, r->mod, tmp, LLVMObjectFile, &msg)) {
		snprintf(err, nerr, "code generation failed: %s", msg ? msg : "");
		ok = false;
	}
	LLVMDisposeMessage(msg);
	if (ok && r->embed_patch) {
		phase_begin(r->phases, "packing");
		int fd = open(tmp, O_RDWR | O_CLOEXEC);
		uint64_t at = fd >= 0 ? elf_embed_offset(fd, r->blob_size, err, nerr) : 0;
		if (fd < 0)
			snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		ok = at && cg_blob_write(r, fd, at, r->phases, err, nerr);
		if (fd >= 0 && close(fd) != 0 && ok) {
			snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
			ok = false;
		}
	}
	if (ok && rename(tmp, path) != 0) {
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	}
	if (!ok)
		remove(tmp);
	free(tmp);
	return ok;
}

/* NAME.weights, streamed from the params. */
static bool
write_weights(CgResult *r, const char *path, char *err, size_t nerr)
{
	char *tmp = tmp_name(path);
	phase_begin(r->phases, "packing");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	bool ok = fd >= 0;
	if (!ok)
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
	ok = ok && cg_blob_write(r, fd, 0, r->phases, err, nerr);
	if (fd >= 0 && close(fd) != 0 && ok) {
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	}
	if (ok && rename(tmp, path) != 0) {
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
		ok = false;
	}
	if (!ok)
		remove(tmp);
	free(tmp);
	return ok;
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
		bool written = false;
		phase_begin(r->phases, bit == CG_EMIT_OBJ || bit == CG_EMIT_ASM || bit == CG_EMIT_LL ? "emission"
		                       : bit == CG_EMIT_WEIGHTS ? "packing" : "header, manifest");
		if (bit == CG_EMIT_OBJ) {
			ok = write_object(r, path, err, sizeof err);
			written = true;
		} else if (bit == CG_EMIT_WEIGHTS) {
			ok = write_weights(r, path, err, sizeof err);
			written = true;
		} else if (bit == CG_EMIT_ASM) {
			ok = emit_machine(r, LLVMAssemblyFile, &mb, err, sizeof err);
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
		} else {
			text = cg_manifest_text(r);
			data = text;
			n = strlen(text);
		}
		if (ok && !written)
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
	phase_end(r->phases);
	if (!ok) {
		diag_error(d, (Loc){ 0 }, "%s", err);
		for (int i = 0; i < ndone; i++)
			remove(done[i]);
	}
	for (int i = 0; i < ndone; i++)
		free(done[i]);
	return ok;
}
