/* cmd_compile.c - `elide compile`: a model (and policy) plus its weights in; a native
 * object, a C header, a packed weight blob and a JSON manifest out.
 *   elide compile M.elide|M.eir -w W.safetensors -o DIR [--policy P]
 *         [--emit=obj,asm,llvm-ir,ir,header] [--embed-weights] [-O0..-O3]
 *         [--target=TRIPLE] [--cpu=NAME] [--features=+a,-b] [--no-fuse]
 * The default pipeline runs (passes/pipeline.c: the policy's passes, then the
 * clean-ups, as in `elide run`), then the verifier; --emit=ir writes the IR codegen saw.
 * NAME.weights (unless --embed-weights) and NAME.json are always written.  Outputs go
 * through temporary files and renames; a failed compile leaves none of them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tools/driver.h"

static void
usage(FILE *out)
{
	fprintf(out,
	        "USAGE: elide compile MODEL.elide -w WEIGHTS.safetensors -o DIR [options]\n\n"
	        "OPTIONS:\n"
	        "  -w, --weights FILE   the model's weights: safetensors, GGUF, a shard index or a\n"
	        "                       model directory; repeat -w for several files (a checkpoint\n"
	        "                       in shards: each tensor in exactly one file)\n"
	        "  -o DIR               output directory (created with its parents if missing)\n"
	        "  --policy NAME        adaptive-compute policy of the model file\n"
	        "  --quantize=F         store the weight matrices as F: q8, q4, bf16 (or f32)\n"
	        "  --quantize-group=G   elements per scale of q8 and q4 (default 32)\n"
	        "  --activations=A      activations of the q8/q4 linears, for the whole model:\n"
	        "                       int8 (the default: inputs quantised to int8 per row and\n"
	        "                       group, integer dot products: VNNI, sdot) or f32 (the f32\n"
	        "                       input times the dequantised weights)\n"
	        "  --int8-activations   the same as --activations=int8\n"
	        "  --emit=LIST          any of obj,asm,llvm-ir,ir,header (default obj,header);\n"
	        "                       NAME.weights and NAME.json are always written\n"
	        "  --embed-weights      put the weight blob in the object (no NAME.weights)\n"
	        "  -O0 .. -O3           optimisation level (default -O3)\n"
	        "  --target=TRIPLE      target triple (default: the host), e.g. aarch64-linux-gnu\n"
	        "  --cpu=NAME           target CPU (default: the host's, generic when cross-compiling);\n"
	        "                       --cpu=help lists the CPUs of the target\n"
	        "  --features=LIST      target features, e.g. +avx2,+fma; --features=help lists them\n"
	        "  -MD                  also write a depfile, DIR/NAME.d, for make and ninja: the\n"
	        "                       outputs depend on the model, the weights and calibration files\n"
	        "  -MF FILE             write the depfile to FILE (implies -MD)\n"
	        "  -MT TARGET           the depfile's target (default: the outputs written)\n"
	        "  --no-fuse            do not fuse elementwise ops into producing kernels\n"
	        "  --no-pass=LIST       leave these passes out of the default pipeline (comma\n"
	        "                       list), e.g. row-sink to measure what it gains\n"
	        "  -v, --verbose        print each phase with its wall time, CPU time (user + sys)\n"
	        "                       and peak memory; progress of long phases on a terminal\n");
}

static const char *
opt_value(const char *arg, const char *name, int *i, int argc, char **argv)
{
	size_t n = strlen(name);
	if (strncmp(arg, name, n) != 0)
		return NULL;
	if (arg[n] == '=')
		return arg + n + 1;
	if (arg[n] == 0 && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static bool
parse_emit(const char *list, unsigned *emit)
{
	*emit = 0;
	char *s = xstrdup(list), *t = s;
	bool ok = true;
	for (char *next; ok && t; t = next) {
		next = strchr(t, ',');
		if (next)
			*next++ = 0;
		if (!*t) {
			fprintf(stderr, "elide: error: expected a list of obj, asm, llvm-ir, ir, header after --emit=, saw '%s'\n", list);
			ok = false;
		} else if (strcmp(t, "obj") == 0)
			*emit |= CG_EMIT_OBJ;
		else if (strcmp(t, "asm") == 0)
			*emit |= CG_EMIT_ASM;
		else if (strcmp(t, "llvm-ir") == 0 || strcmp(t, "ll") == 0)
			*emit |= CG_EMIT_LL;
		else if (strcmp(t, "ir") == 0)
			*emit |= CG_EMIT_IR;
		else if (strcmp(t, "header") == 0)
			*emit |= CG_EMIT_HEADER;
		else {
			fprintf(stderr, "elide: error: unknown --emit kind '%s' (expected obj, asm, llvm-ir, ir, header)\n", t);
			ok = false;
		}
	}
	free(s);
	return ok;
}

/* mkdir -p */
static bool
make_dirs(const char *path)
{
	if (!*path) {
		errno = ENOENT;
		return false;
	}
	char *p = xstrdup(path);
	bool ok = true;
	for (char *s = p + 1; ok && *s; s++)
		if (*s == '/') {
			*s = 0;
			ok = mkdir(p, 0777) == 0 || errno == EEXIST;
			*s = '/';
		}
	ok = ok && (mkdir(p, 0777) == 0 || errno == EEXIST);
	free(p);
	return ok;
}

static void
progress(void *ph, uint64_t done, uint64_t total)
{
	phase_progress(ph, done, total);
}

/* A make rule word: the absolute path (relative ones would depend on the directory
 * the build tool reads the depfile from), spaces, '#' and '$' escaped as make and
 * ninja read them. */
static void
dep_word(StrBuf *b, const char *path)
{
	char *abs = realpath(path, NULL);
	const char *s = abs ? abs : path;
	sb_printf(b, " ");
	for (; *s; s++)
		sb_printf(b, *s == ' ' || *s == '#' ? "\\%c" : *s == '$' ? "$%c" : "%c", *s);
	free(abs);
}

/* DIR/NAME.d (or `path`): the outputs written, then every input read. */
static bool
write_depfile(const char *path, const char *target, const char *dir, const char *name, unsigned emit,
              const char *const *deps, int ndeps)
{
	static const struct { unsigned bit; const char *ext; } outs[] = {
		{ CG_EMIT_OBJ, "o" }, { CG_EMIT_ASM, "s" }, { CG_EMIT_LL, "ll" }, { CG_EMIT_IR, "eir" },
		{ CG_EMIT_HEADER, "h" }, { CG_EMIT_WEIGHTS, "weights" }, { CG_EMIT_MANIFEST, "json" },
	};
	StrBuf b = { 0 };
	char buf[4096];
	if (target) {
		sb_printf(&b, "%s", target);
	} else {
		bool first = true;
		for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
			if (!(emit & outs[i].bit))
				continue;
			snprintf(buf, sizeof buf, "%s/%s.%s", dir, name, outs[i].ext);
			StrBuf t = { 0 };
			dep_word(&t, buf);
			sb_printf(&b, "%s", first ? t.s + 1 : t.s);
			first = false;
			free(t.s);
		}
	}
	sb_printf(&b, ":");
	for (int i = 0; i < ndeps; i++)
		dep_word(&b, deps[i]);
	sb_printf(&b, "\n");
	char *p = NULL;
	if (!path) {
		size_t n = strlen(dir) + strlen(name) + 4;
		p = xmalloc(n);
		snprintf(p, n, "%s/%s.d", dir, name);
	}
	char err[512];
	bool ok = cg_write_file(path ? path : p, b.s, b.n, err, sizeof err);
	if (!ok)
		fprintf(stderr, "elide: error: %s\n", err);
	free(p);
	free(b.s);
	return ok;
}

/* A model in the language (.elide, with the policy chosen) or in textual IR (.eir). */
Module *
cmd_load_model(const char *path, const char *policy, Diag *d)
{
	size_t n = strlen(path);
	if (n < 4 || strcmp(path + n - 4, ".eir") != 0)
		return fe_load(path, policy, d);
	if (policy) {
		diag_error(d, (Loc){ .file = path }, "--policy applies to .elide models; a .eir module carries its own");
		return NULL;
	}
	SourceFile *src = diag_read_file(path);
	if (!src) {
		diag_error(d, (Loc){ 0 }, "cannot read '%s': %s", path,
		           errno == EFBIG ? "larger than the 64 MiB limit of a source file" : strerror(errno));
		return NULL;
	}
	diag_add_source(d, src);
	return ir_parse_module(src, d);
}

int
cmd_compile(int argc, char **argv)
{
	const char *model = NULL, *weights = NULL, *outdir = NULL, *policy = NULL, *quant = NULL;
	const char *wfiles[64];
	uint32_t nw = 0;
	int qgroup = 32;
	bool qgroup_given = false;
	int act = -1; /* --activations: an ActFormat, -1 when not given */
	CgOptions o = { .opt_level = 3, .fuse = true };
	PassOptions popts = { 0 }; /* --no-pass */
	bool verbose = false, depfile = false, cpu_help = false, feat_help = false;
	const char *dep_path = NULL, *dep_target = NULL;
	unsigned emit = CG_EMIT_OBJ | CG_EMIT_HEADER;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if ((v = opt_value(a, "--weights", &i, argc, argv)) || (v = opt_value(a, "-w", &i, argc, argv))) {
			if (nw == 64) {
				fprintf(stderr, "elide: error: more than 64 weights files\n");
				return 2;
			}
			weights = wfiles[nw++] = v;
		} else if ((v = opt_value(a, "-o", &i, argc, argv))) {
			outdir = v;
		} else if ((v = opt_value(a, "--policy", &i, argc, argv))) {
			policy = v;
		} else if ((v = opt_value(a, "--no-pass", &i, argc, argv))) {
			popts.skip = v;
		} else if ((v = opt_value(a, "--quantize", &i, argc, argv))) {
			quant = v;
		} else if ((v = opt_value(a, "--quantize-group", &i, argc, argv))) {
			char *end;
			long gl = strtol(v, &end, 10);
			if (*end || gl < 8 || gl > 4096 || gl % 8) {
				fprintf(stderr, "elide: error: expected a group that is a multiple of 8 in [8, 4096], saw '%s'\n", v);
				return 2;
			}
			qgroup = (int)gl;
			qgroup_given = true;
		} else if ((v = opt_value(a, "--emit", &i, argc, argv))) {
			if (!parse_emit(v, &emit))
				return 2;
		} else if ((v = opt_value(a, "--target", &i, argc, argv))) {
			o.triple = v;
		} else if ((v = opt_value(a, "--cpu", &i, argc, argv))) {
			o.cpu = v;
			cpu_help = strcmp(v, "help") == 0;
		} else if ((v = opt_value(a, "--features", &i, argc, argv))) {
			o.features = v;
			feat_help = strcmp(v, "help") == 0;
		} else if (strcmp(a, "--embed-weights") == 0) {
			o.embed_weights = true;
		} else if (strcmp(a, "-MD") == 0) {
			depfile = true;
		} else if ((v = opt_value(a, "-MF", &i, argc, argv))) {
			depfile = true;
			dep_path = v;
		} else if ((v = opt_value(a, "-MT", &i, argc, argv))) {
			dep_target = v;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			verbose = true;
		} else if ((v = opt_value(a, "--activations", &i, argc, argv))) {
			act = ir_actformat_from_name(v);
			if (act < 0) {
				fprintf(stderr, "elide: error: expected --activations=int8 or f32, saw '%s'\n", v);
				return 2;
			}
		} else if (strcmp(a, "--int8-activations") == 0) {
			act = AF_INT8;
		} else if (strcmp(a, "--no-fuse") == 0) {
			o.fuse = false;
		} else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
			o.opt_level = a[2] - '0';
		} else if (a[0] == '-') {
			fprintf(stderr, "elide: error: unknown option '%s' (see 'elide compile --help')\n", a);
			return 2;
		} else if (!model) {
			model = a;
		} else {
			fprintf(stderr, "elide: error: more than one model file ('%s' and '%s')\n", model, a);
			return 2;
		}
	}
	if (cpu_help || feat_help) { /* the target's tables; nothing is compiled */
		char err[512];
		bool ok = cpu_help ? cg_target_print_cpus(stdout, o.triple, err, sizeof err)
		                   : cg_target_print_features(stdout, o.triple, err, sizeof err);
		if (!ok)
			fprintf(stderr, "elide: error: %s\n", err);
		return ok ? 0 : 1;
	}
	if (!model || !weights || !outdir) {
		fprintf(stderr, "elide: error: %s\n", !model ? "no model file given" : !weights ? "no weights given (-w FILE)"
		                                                                          : "no output directory given (-o DIR)");
		usage(stderr);
		return 2;
	}
	if (!*outdir) {
		fprintf(stderr, "elide: error: expected an output directory after -o, saw ''\n");
		return 2;
	}
	if (qgroup_given && !quant) {
		fprintf(stderr, "elide: error: --quantize-group has no effect without --quantize\n");
		return 2;
	}
	emit |= CG_EMIT_MANIFEST | (o.embed_weights ? 0 : CG_EMIT_WEIGHTS);
	if (quant && ir_qformat_from_name(quant) < 0) {
		fprintf(stderr, "elide: error: expected --quantize=q8, q4, bf16 or f32, saw '%s'\n", quant);
		return 2;
	}
	if (o.triple || o.cpu || o.features) { /* a wrong target name fails before the weights load */
		char err[512];
		CgTarget *t = cg_target_new(o.triple, o.cpu, o.features, o.opt_level, err, sizeof err);
		if (!t) {
			fprintf(stderr, "elide: error: %s\n", err);
			return 1;
		}
		cg_target_free(t);
	}
	/* embedded weights are written into the object file after LLVM, unless the asm or
	 * the LLVM IR must show them too */
	o.embed_patch = o.embed_weights && !(emit & (CG_EMIT_ASM | CG_EMIT_LL));
	Phases phases, *ph = NULL;
	if (verbose) {
		phases_init(&phases, stderr, isatty(fileno(stderr)));
		ph = &phases;
	}
	o.phases = ph;

	static Diag d; /* the front end keeps its sources registered here for the process */
	diag_init(&d, stderr);
	phase_begin(ph, "parse");
	Module *m = cmd_load_model(model, policy, &d);
	if (!m)
		return 1;
	/* --quantize and --activations before the weights load: an error costs nothing */
	if (quant && act == AF_INT8 && !ir_actformat_fits((QFormat)ir_qformat_from_name(quant), AF_INT8)) {
		fprintf(stderr, "elide: error: --activations=int8 needs q8 or q4 weights, saw --quantize=%s\n", quant);
		ir_free_module(m);
		return 2;
	}
	if (quant)
		pass_quantize_add_stmt(m, quant, qgroup, -1);
	if (act >= 0 && pass_quantize_set_act(m, (ActFormat)act) == 0) {
		fprintf(stderr, "elide: error: --activations has no effect without q8 or q4 weights (--quantize or a "
		                "quantize statement)\n");
		ir_free_module(m);
		return 2;
	}
	phase_begin(ph, "load weights");
	if (!ir_load_weights_progress(m, wfiles, nw, &d, progress, ph)) {
		ir_free_module(m);
		return 1;
	}
	if (nw == 1) /* several files have no one path to record */
		m->weights_path = arena_strdup(&m->arena, weights);
	/* the files the outputs depend on, for -MD: read before the passes consume the
	 * policy's statements */
	const char *deps[64];
	int ndeps = 0;
	for (int i = 0; i < d.nsrcs && ndeps < 60; i++)
		deps[ndeps++] = d.srcs[i]->path;
	for (uint32_t i = 0; i < nw && ndeps < 60; i++)
		deps[ndeps++] = wfiles[i];
	for (uint32_t i = 0; m->policy && i < m->policy->nstmts && ndeps < 63; i++) {
		const PolicyStmt *s = &m->policy->stmts[i];
		if (s->verb == POL_PRUNE && ir_policy_given(s, PK_PRUNE_CALIBRATE) && s->prune.calibrate)
			deps[ndeps++] = s->prune.calibrate;
		if (s->verb == POL_SKIP && ir_policy_given(s, PK_SKIP_CALIBRATE) && s->skip.calibrate)
			deps[ndeps++] = s->skip.calibrate;
	}
	ir_policy_snapshot(m); /* the statements as written, for the manifest */
	/* the default pipeline (the policy's passes, then the clean-ups), as `elide run` */
	phase_begin(ph, "passes");
	if (!pass_run_default_opts(m, &popts, &d) || !ir_verify(m, &d)) {
		ir_free_module(m);
		return 1;
	}
	if (!make_dirs(outdir)) {
		fprintf(stderr, "elide: error: cannot create '%s': %s\n", outdir, strerror(errno));
		ir_free_module(m);
		return 1;
	}
	char *ir_text = (emit & CG_EMIT_IR) ? ir_print_module_str(m) : NULL;
	phase_begin(ph, "codegen");
	CgResult *r = cg_compile(m, &o, &d);
	int rc = 1;
	if (r) {
		char err[512];
		phase_begin_long(ph, "LLVM optimisation");
		bool opt_ok = cg_optimize(r, o.opt_level, err, sizeof err);
		phase_end(ph);
		if (!opt_ok)
			diag_error(&d, (Loc){ 0 }, "%s", err);
		else if (cg_write_outputs(r, outdir, emit, ir_text, &d))
			rc = 0;
	}
	if (rc == 0 && depfile && !write_depfile(dep_path, dep_target, outdir, m->name, emit, deps, ndeps))
		rc = 1;
	if (rc == 0)
		phases_report(ph);
	free(ir_text);
	cg_result_free(r);
	ir_free_module(m);
	return rc;
}
