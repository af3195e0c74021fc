/* elfsyms.h - the function symbols of the running program, local ones included, read
 * from the ELF symbol table (.symtab) of /proc/self/exe, with their run-time addresses.
 * The generated task functions are local symbols (`MODEL.attention...`), which the
 * dynamic symbol table and dladdr do not see; a benchmark names a task it receives
 * through the parallel-for hook by looking its address up here.
 *   1. Map /proc/self/exe read-only and check its ELF header (64-bit, native byte order,
 *      sections in the file).
 *   2. Find the SHT_SYMTAB section and its string table (sh_link); fail if the program
 *      is stripped.
 *   3. The load bias (non-zero for a position-independent executable): the run-time
 *      address of a known global function minus its symbol's value.
 *   4. Keep the STT_FUNC symbols whose name passes the caller's filter.
 * Header-only, like bench.h (run.sh compiles each driver as one file with cc). */
#ifndef ELIDE_BENCH_ELFSYMS_H
#define ELIDE_BENCH_ELFSYMS_H

#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct BenchSym {
	uintptr_t addr; /* run-time address */
	char *name;     /* malloc'ed */
} BenchSym;

/* Reads the function symbols of /proc/self/exe whose names pass keep(name, arg) into
 * *out (malloc'ed, with their names: bench_syms_free) and returns their number, or -1
 * with a message on stderr.  anchor is the address of the global function named
 * anchor_name (to find the load bias). */
static int
bench_syms_read(const char *anchor_name, const void *anchor, int (*keep)(const char *name, void *arg), void *arg,
                BenchSym **out)
{
	*out = NULL;
	int fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0) {
		perror("elfsyms: /proc/self/exe");
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
		fprintf(stderr, "elfsyms: /proc/self/exe: cannot read its size or too small\n");
		close(fd);
		return -1;
	}
	size_t size = (size_t)st.st_size;
	const unsigned char *f = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (f == MAP_FAILED) {
		perror("elfsyms: mmap of /proc/self/exe");
		return -1;
	}
	int n = -1;
	const char *why = NULL;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f;
	const Elf64_Shdr *sh = NULL, *symtab = NULL, *strtab = NULL;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64)
		why = "not a 64-bit ELF file";
	else if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff == 0 || eh->e_shoff > size ||
	         (size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum)
		why = "section headers missing or out of the file";
	else {
		sh = (const Elf64_Shdr *)(f + eh->e_shoff);
		for (int i = 0; i < eh->e_shnum; i++)
			if (sh[i].sh_type == SHT_SYMTAB)
				symtab = &sh[i];
		if (!symtab)
			why = "no symbol table (.symtab): is the program stripped?";
		else if (symtab->sh_link >= eh->e_shnum || symtab->sh_entsize != sizeof(Elf64_Sym))
			why = "symbol table malformed";
		else {
			strtab = &sh[symtab->sh_link];
			if (symtab->sh_offset > size || size - symtab->sh_offset < symtab->sh_size ||
			    strtab->sh_offset > size || size - strtab->sh_offset < strtab->sh_size || strtab->sh_size == 0 ||
			    f[strtab->sh_offset + strtab->sh_size - 1] != 0)
				why = "symbol or string table out of the file";
		}
	}
	if (!why) {
		const Elf64_Sym *sym = (const Elf64_Sym *)(f + symtab->sh_offset);
		size_t nsym = symtab->sh_size / sizeof *sym;
		const char *names = (const char *)(f + strtab->sh_offset);
		/* the load bias from the anchor */
		int have_bias = 0;
		uintptr_t bias = 0;
		for (size_t i = 0; i < nsym && !have_bias; i++)
			if (ELF64_ST_TYPE(sym[i].st_info) == STT_FUNC && ELF64_ST_BIND(sym[i].st_info) == STB_GLOBAL &&
			    sym[i].st_name < strtab->sh_size && strcmp(names + sym[i].st_name, anchor_name) == 0) {
				bias = (uintptr_t)anchor - (uintptr_t)sym[i].st_value;
				have_bias = 1;
			}
		BenchSym *v = calloc(nsym ? nsym : 1, sizeof *v);
		if (!have_bias)
			why = "the anchor function is not in the symbol table";
		else if (!v)
			why = "out of memory";
		else {
			n = 0;
			for (size_t i = 0; i < nsym; i++) {
				if (ELF64_ST_TYPE(sym[i].st_info) != STT_FUNC || sym[i].st_value == 0 ||
				    sym[i].st_name >= strtab->sh_size || !keep(names + sym[i].st_name, arg))
					continue;
				v[n].addr = bias + (uintptr_t)sym[i].st_value;
				v[n].name = strdup(names + sym[i].st_name);
				if (!v[n].name) {
					why = "out of memory";
					break;
				}
				n++;
			}
			*out = v;
		}
		if (why) {
			for (int i = 0; i < n; i++)
				free(v[i].name);
			free(v);
			*out = NULL;
			n = -1;
		}
	}
	munmap((void *)f, size);
	if (why)
		fprintf(stderr, "elfsyms: /proc/self/exe: %s\n", why);
	return n;
}

static void
bench_syms_free(BenchSym *v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

#endif
