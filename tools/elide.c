/* elide.c - the driver: `elide SUBCOMMAND [options]`, in the style of clang and llc.
 * Dispatches to the subcommands of driver.h; prints help and version itself.
 * Exit codes: 0 success, 1 errors in the input, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "tools/driver.h"

#ifndef ELIDE_VERSION
#define ELIDE_VERSION "0.0.0"
#endif

typedef struct Subcommand {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} Subcommand;

static const Subcommand subcommands[] = {
	{ "check", cmd_check, "parse, check and verify a model: elide check FILE.elide [--policy NAME] [--dump-ast]" },
	{ "opt", cmd_opt, "run passes and print the IR: elide opt FILE.eir|FILE.elide --passes=a,b [--print-after=NAME]" },
	{ "run", cmd_run, "run a model: elide run M.elide -w W.safetensors --tokens 1,2,3 [--interp] [--policy NAME]" },
	{ "import", cmd_import, "write a model for a checkpoint: elide import DIR|FILE.gguf -o M.elide [--ctx N]" },
	{ "compile", cmd_compile, "compile a model: elide compile M.elide -w W.safetensors -o DIR [--policy NAME] [--emit=...]" },
};

static void
usage(FILE *out)
{
	fprintf(out, "OVERVIEW: elide %s - ahead-of-time compiler for inference graphs with adaptive compute\n\n"
	             "USAGE: elide SUBCOMMAND [options]\n\nSUBCOMMANDS:\n", ELIDE_VERSION);
	for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
		fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].help);
	fprintf(out, "\nOPTIONS:\n  --help     this text\n  --version  the version, LLVM's and the default target\n\n"
	             "`elide help SUBCOMMAND` or `elide SUBCOMMAND --help` describes a subcommand's options.\n");
}

static void
version(void)
{
	unsigned major, minor, patch;
	LLVMGetVersion(&major, &minor, &patch);
	char *triple = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName();
	printf("elide version %s\nLLVM version %u.%u.%u\ndefault target: %s\nhost CPU: %s\n", ELIDE_VERSION, major,
	       minor, patch, triple, cpu);
	LLVMDisposeMessage(triple);
	LLVMDisposeMessage(cpu);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "help") == 0 && argc >= 3) { /* elide help SUBCOMMAND */
		for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
			if (strcmp(argv[2], subcommands[i].name) == 0) {
				char *args[3] = { argv[2], "--help", NULL };
				return subcommands[i].fn(2, args);
			}
		fprintf(stderr, "elide: error: unknown subcommand '%s' (see 'elide --help')\n", argv[2]);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		version();
		return 0;
	}
	for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "elide: error: unknown subcommand '%s' (see 'elide --help')\n", argv[1]);
	return 2;
}
