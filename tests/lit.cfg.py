# lit configuration for every suite under tests/ (passes, diag, language, ...).
# The driver passes --param elide=<path of the built elide> and llvm_bin=<LLVM 19 bin>.
import os
import lit.formats

config.name = "elide"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".elide", ".eir", ".test"]
config.excludes = ["Inputs", "fixtures", "unit", "e2e", "CMakeLists.txt"]
config.test_source_root = os.path.dirname(__file__)

elide = lit_config.params.get("elide")
llvm_bin = lit_config.params.get("llvm_bin", "/usr/lib/llvm-19/bin")
if not elide or not os.path.exists(elide):
    lit_config.fatal("pass --param elide=<path to the built elide binary>")

config.substitutions.append(("%elide", elide))
config.substitutions.append(("%build", lit_config.params.get("build_dir", "")))
# flags for programs linked with the runtime as built (the sanitizers in `make asan`)
config.substitutions.append(("%cflags", lit_config.params.get("cflags", "")))
config.substitutions.append(("%srcroot", os.path.dirname(config.test_source_root)))
# Plain words in RUN lines resolve through PATH: elide first, then LLVM's tools.
config.environment["PATH"] = os.pathsep.join(
    [os.path.dirname(elide), llvm_bin, config.environment.get("PATH", os.environ.get("PATH", ""))])
