/* target.c - the target machine, and the kernel geometry chosen from its features.
 * The host is the default (its CPU name and feature string from LLVM); --target,
 * --cpu and --features cross-compile.  The vector width follows the widest float
 * vector the target has: 16 lanes with AVX-512, 8 with AVX2, 4 otherwise (SSE,
 * NEON).  Panels hold two vectors per k; the micro-kernel row count keeps the
 * accumulators, two panel vectors and a broadcast inside the register file.  The
 * q8/q4 kernels use vpdpbusd where the target has AVX512-VNNI (or AVX-VNNI with
 * 256-bit vectors), sdot on AArch64 with dotprod, widened multiplies otherwise. */
#include "codegen/codegen.h"

#include <llvm-c/Target.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
init_llvm(void)
{
	LLVMInitializeAllTargetInfos();
	LLVMInitializeAllTargets();
	LLVMInitializeAllTargetMCs();
	LLVMInitializeAllAsmPrinters();
	LLVMInitializeAllAsmParsers();
	LLVMInitializeAllDisassemblers(); /* target_tables.c reads the CPU tables through them */
}

void
cg_llvm_init(void)
{
	pthread_once(&init_once, init_llvm);
}

/* True when the comma-separated feature list enables `feat` ("+avx2"). */
static bool
has_feature(const char *list, const char *feat)
{
	size_t n = strlen(feat);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, feat, n) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

static bool
cpu_in(const char *cpu, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(cpu, *names) == 0)
			return true;
	return false;
}

/* x86 CPUs of LLVM 19 with AVX-512F, and with AVX2 but not AVX-512F (the host's
 * features come from LLVM itself; these lists serve --cpu). */
static const char *const cpus_avx512[] = { "knl", "knm", "skylake-avx512", "skx", "cascadelake",
	"cooperlake", "cannonlake", "icelake-client", "icelake-server", "tigerlake", "rocketlake",
	"sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5",
	"x86-64-v4", NULL };
static const char *const cpus_avx2[] = { "haswell", "core-avx2", "broadwell", "skylake", "alderlake",
	"raptorlake", "meteorlake", "arrowlake", "arrowlake-s", "arrowlake_s", "lunarlake", "gracemont",
	"pantherlake", "sierraforest", "grandridge", "clearwaterforest", "bdver4", "znver1", "znver2",
	"znver3", "x86-64-v3", NULL };

int
cg_target_vec_width(const char *triple, const char *cpu, const char *features)
{
	bool x86 = strncmp(triple, "x86_64", 6) == 0 || strncmp(triple, "i686", 4) == 0 || strncmp(triple, "i386", 4) == 0;
	if (x86 && !has_feature(features, "-avx512f") && (has_feature(features, "+avx512f") || cpu_in(cpu, cpus_avx512)))
		return 16;
	if (x86 && !has_feature(features, "-avx2")
	    && (has_feature(features, "+avx2") || cpu_in(cpu, cpus_avx2) || cpu_in(cpu, cpus_avx512)))
		return 8;
	return 4;
}
static const char *const cpus_vnni[] = { "cascadelake", "cooperlake", "icelake-client",
	"icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
	"znver4", "znver5", NULL };

CgTarget *
cg_target_new(const char *triple, const char *cpu, const char *features, int opt_level,
              char *err, size_t nerr)
{
	pthread_once(&init_once, init_llvm);
	CgTarget *t = xcalloc(1, sizeof *t);
	char *def = LLVMGetDefaultTargetTriple();
	char *norm = LLVMNormalizeTargetTriple(triple && *triple ? triple : def);
	t->triple = xstrdup(norm);
	t->is_host = !triple || !*triple || strcmp(norm, def) == 0;
	LLVMDisposeMessage(norm);
	LLVMDisposeMessage(def);
	if (cpu && *cpu) {
		t->cpu = xstrdup(cpu);
	} else if (t->is_host) {
		char *h = LLVMGetHostCPUName();
		t->cpu = xstrdup(h);
		LLVMDisposeMessage(h);
	} else {
		t->cpu = xstrdup("");
	}
	if (features) {
		t->features = xstrdup(features);
	} else if (t->is_host && !(cpu && *cpu)) {
		char *h = LLVMGetHostCPUFeatures();
		t->features = xstrdup(h);
		LLVMDisposeMessage(h);
	} else {
		t->features = xstrdup("");
	}
	LLVMTargetRef target;
	char *msg = NULL;
	if (LLVMGetTargetFromTriple(t->triple, &target, &msg)) {
		snprintf(err, nerr, "unknown target '%s': %s", t->triple, msg ? msg : "");
		LLVMDisposeMessage(msg);
		cg_target_free(t);
		return NULL;
	}
	/* a CPU or features the user named are checked against LLVM's tables (LLVM
	 * itself only warns, then fails later in code generation) */
	if (((cpu && *cpu) || features) && !cg_target_check(t->triple, cpu, features, err, nerr)) {
		cg_target_free(t);
		return NULL;
	}
	LLVMCodeGenOptLevel lvl = opt_level <= 0 ? LLVMCodeGenLevelNone
	                        : opt_level == 1 ? LLVMCodeGenLevelLess
	                        : opt_level == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
	t->tm = LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features, lvl, LLVMRelocPIC,
	                                LLVMCodeModelDefault);
	if (!t->tm) {
		snprintf(err, nerr, "cannot create a target machine for '%s'", t->triple);
		cg_target_free(t);
		return NULL;
	}
	t->td = LLVMCreateTargetDataLayout(t->tm);

	t->nvec = 2;
	t->vec = cg_target_vec_width(t->triple, t->cpu, t->features);
	bool arm64 = strncmp(t->triple, "aarch64", 7) == 0 || strncmp(t->triple, "arm64", 5) == 0;
	bool x86 = strncmp(t->triple, "x86_64", 6) == 0 || strncmp(t->triple, "i686", 4) == 0 || strncmp(t->triple, "i386", 4) == 0;
	t->mr = t->vec == 16 ? 8 : t->vec == 8 ? 6 : arm64 ? 8 : 4;
	/* the q8/q4 kernels: the integer dot product, and the rows of the micro-kernel
	 * that keep rows x nvec integer and float accumulators, the panel vectors, the
	 * scales and a broadcast in the register file (32 vector registers with
	 * AVX-512 and on AArch64, 16 otherwise) */
	int nregs = (t->vec == 16 || arm64) ? 32 : 16;
	t->qmr = (nregs - 2 * t->nvec - 2) / (2 * t->nvec);
	t->dot = CG_DOT_GENERIC;
	if (x86 && t->vec == 16 && !has_feature(t->features, "-avx512vnni")
	    && (has_feature(t->features, "+avx512vnni") || cpu_in(t->cpu, cpus_vnni)))
		t->dot = CG_DOT_VNNI;
	else if (x86 && t->vec == 8
	         && (has_feature(t->features, "+avxvnni")
	             || (has_feature(t->features, "+avx512vnni") && has_feature(t->features, "+avx512vl"))))
		t->dot = CG_DOT_VNNI;
	else if (arm64 && has_feature(t->features, "+dotprod"))
		t->dot = CG_DOT_SDOT;
	/* the q8/q4 scales are f16: converted by vcvtph2ps (F16C, which every AVX2 and
	 * AVX-512 CPU has) or fcvtl (AArch64); elsewhere by integer operations */
	t->f16cvt = arm64
	            || (x86 && !has_feature(t->features, "-f16c")
	                && (has_feature(t->features, "+f16c") || cpu_in(t->cpu, cpus_avx512) || cpu_in(t->cpu, cpus_avx2)));
	return t;
}

void
cg_target_free(CgTarget *t)
{
	if (!t)
		return;
	if (t->td)
		LLVMDisposeTargetData(t->td);
	if (t->tm)
		LLVMDisposeTargetMachine(t->tm);
	free(t->triple);
	free(t->cpu);
	free(t->features);
	free(t);
}

bool
cg_target_is_elf(const CgTarget *t)
{
	static const char *const other[] = { "darwin", "macos", "ios", "tvos", "watchos", "windows", "win32",
		"mingw", "cygwin", "uefi", "wasm", "aix", "zos", "xcoff", "goff", NULL };
	for (const char *const *o = other; *o; o++)
		if (strstr(t->triple, *o))
			return false;
	return true;
}
