# ElideAddModel.cmake - elide_add_model(): a model compiled at build time into a
# static library target that carries its header (docs/install.md).
#
#   elide_add_model(<target>
#                   MODEL model.elide
#                   WEIGHTS w.safetensors [w2.safetensors ...]
#                   [POLICY name] [EMBED_WEIGHTS] [TARGET triple] [CPU name]
#                   [FEATURES +a,-b] [OPT 0|1|2|3] [NAME model_name] [OUTPUT_DIR dir])
#
# Runs `elide compile` when the model, a weights file, a calibration file its policy
# reads (through the depfile elide writes with -MD) or elide itself changes, from the
# model's folder (calibration paths are relative to it).  The outputs go to
# OUTPUT_DIR (default ${CMAKE_CURRENT_BINARY_DIR}/<target>): NAME.o, NAME.h,
# NAME.json and, without EMBED_WEIGHTS, NAME.weights.  NAME is the model's name as
# declared (`model NAME {`), read from the file unless given.
#
# <target> is a static library of the object; linking it gives its include
# directory (#include "NAME.h") and the runtime, elide::elide_rt.  Its properties
# ELIDE_WEIGHTS (the .weights path; empty with EMBED_WEIGHTS), ELIDE_MANIFEST (the
# .json) and ELIDE_HEADER name the other outputs.
#
# The compiler is the target elide::elide (the installed package), or `elide` inside
# elide's own build tree.

function(elide_add_model target)
  cmake_parse_arguments(PARSE_ARGV 1 EM "EMBED_WEIGHTS" "MODEL;POLICY;TARGET;CPU;FEATURES;OPT;NAME;OUTPUT_DIR"
                        "WEIGHTS")
  if(EM_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "elide_add_model(${target}): unknown arguments: ${EM_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT EM_MODEL)
    message(FATAL_ERROR "elide_add_model(${target}): MODEL model.elide is required")
  endif()
  if(NOT EM_WEIGHTS)
    message(FATAL_ERROR "elide_add_model(${target}): WEIGHTS file.safetensors is required")
  endif()
  get_filename_component(model "${EM_MODEL}" ABSOLUTE)
  if(NOT EXISTS "${model}")
    message(FATAL_ERROR "elide_add_model(${target}): model '${model}' not found")
  endif()
  get_filename_component(model_dir "${model}" DIRECTORY)
  if(EM_NAME)
    set(name "${EM_NAME}")
  else()
    file(STRINGS "${model}" decl REGEX "^[ \t]*model[ \t]+[A-Za-z_][A-Za-z0-9_]*" LIMIT_COUNT 1)
    string(REGEX REPLACE "^[ \t]*model[ \t]+([A-Za-z_][A-Za-z0-9_]*).*" "\\1" name "${decl}")
    if(NOT name)
      message(FATAL_ERROR "elide_add_model(${target}): no 'model NAME' declaration in '${model}' (give NAME)")
    endif()
  endif()
  if(EM_OUTPUT_DIR)
    get_filename_component(out "${EM_OUTPUT_DIR}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")
  else()
    set(out "${CMAKE_CURRENT_BINARY_DIR}/${target}")
  endif()

  if(TARGET elide::elide)
    set(compiler elide::elide)
  elseif(TARGET elide)
    set(compiler elide)
  else()
    message(FATAL_ERROR "elide_add_model(${target}): no elide compiler (find_package(elide) first)")
  endif()

  set(args compile "${model}" -o "${out}" -MD)
  set(weights)
  foreach(w IN LISTS EM_WEIGHTS)
    get_filename_component(w "${w}" ABSOLUTE)
    list(APPEND weights "${w}")
    list(APPEND args -w "${w}")
  endforeach()
  if(EM_POLICY)
    list(APPEND args --policy "${EM_POLICY}")
  endif()
  if(EM_TARGET)
    list(APPEND args "--target=${EM_TARGET}")
  endif()
  if(EM_CPU)
    list(APPEND args "--cpu=${EM_CPU}")
  endif()
  if(EM_FEATURES)
    list(APPEND args "--features=${EM_FEATURES}")
  endif()
  if(DEFINED EM_OPT)
    list(APPEND args "-O${EM_OPT}")
  endif()
  set(outputs "${out}/${name}.o" "${out}/${name}.h" "${out}/${name}.json")
  set(weights_file "")
  if(EM_EMBED_WEIGHTS)
    list(APPEND args --embed-weights)
  else()
    set(weights_file "${out}/${name}.weights")
    list(APPEND outputs "${weights_file}")
  endif()

  add_custom_command(OUTPUT ${outputs}
    COMMAND ${CMAKE_COMMAND} -E make_directory "${out}"
    COMMAND ${compiler} ${args}
    DEPENDS ${compiler} "${model}" ${weights}
    DEPFILE "${out}/${name}.d"
    WORKING_DIRECTORY "${model_dir}"
    COMMENT "elide compile ${name} (${target})"
    VERBATIM)
  set_source_files_properties("${out}/${name}.o" PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  add_library(${target} STATIC "${out}/${name}.o" "${out}/${name}.h")
  set_target_properties(${target} PROPERTIES LINKER_LANGUAGE C
    ELIDE_WEIGHTS "${weights_file}" ELIDE_MANIFEST "${out}/${name}.json" ELIDE_HEADER "${out}/${name}.h")
  target_include_directories(${target} INTERFACE "${out}")
  if(TARGET elide::elide_rt)
    target_link_libraries(${target} INTERFACE elide::elide_rt)
  else()
    target_link_libraries(${target} INTERFACE elide_rt)
  endif()
endfunction()
