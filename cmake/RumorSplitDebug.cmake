# Install-time helper (run by `cmake --install`, see cmake/RumorPackaging.cmake): strips an
# installed binary and keeps its debug information apart, the way Debian's dh_strip does:
#   - the debug sections go to a file named by the binary's build id, installed (component
#     `debug`) as PREFIX/lib/debug/.build-id/ab/cdef....debug, where gdb looks by build id
#     (its debug-file-directory is /usr/lib/debug for the /usr prefix);
#   - the installed binary loses its symbols and debug sections and gains a .gnu_debuglink.
# The debug file is made from the build tree's binary, so installing the `debug` component alone
# works too.

# rumor_debug_file(SRC OUT_VAR ID_VAR): extracts SRC's debug sections into the build tree's
# staging directory (once per build id) and returns the path and the build id.
function(rumor_debug_file src out_var id_var)
  execute_process(COMMAND "${RUMOR_READELF}" -n "${src}" OUTPUT_VARIABLE notes
                  RESULT_VARIABLE rc)
  string(REGEX MATCH "Build ID: ([0-9a-f]+)" _ "${notes}")
  set(id "${CMAKE_MATCH_1}")
  if(NOT rc EQUAL 0 OR id STREQUAL "")
    message(FATAL_ERROR "rumor: ${src} has no build id (it is linked with --build-id)")
  endif()
  string(SUBSTRING "${id}" 0 2 dir)
  string(SUBSTRING "${id}" 2 -1 rest)
  set(dbg "${RUMOR_DEBUG_STAGING}/${dir}/${rest}.debug")
  if(NOT EXISTS "${dbg}" OR "${src}" IS_NEWER_THAN "${dbg}")
    file(MAKE_DIRECTORY "${RUMOR_DEBUG_STAGING}/${dir}")
    execute_process(COMMAND "${RUMOR_OBJCOPY}" --only-keep-debug --compress-debug-sections=zlib
                            "${src}" "${dbg}" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "rumor: objcopy --only-keep-debug ${src} failed")
    endif()
  endif()
  set(${out_var} "${dbg}" PARENT_SCOPE)
  set(${id_var} "${id}" PARENT_SCOPE)
endfunction()

# rumor_strip_installed(SRC INSTALLED KIND): KIND is `executable` or `library`.
function(rumor_strip_installed src installed kind)
  rumor_debug_file("${src}" dbg id)
  if(kind STREQUAL "library")
    set(strip --strip-unneeded)  # keep the dynamic symbols' relocation needs
  else()
    set(strip --strip-all)
  endif()
  set(path "$ENV{DESTDIR}${installed}")
  # Idempotent: a file CMake found up to date is the one stripped last time.
  execute_process(COMMAND "${RUMOR_READELF}" -S --wide "${path}" OUTPUT_VARIABLE sections
                  ERROR_QUIET)
  if(sections MATCHES "\\.gnu_debuglink")
    message(STATUS "Already stripped: ${path}")
    return()
  endif()
  execute_process(COMMAND "${RUMOR_OBJCOPY}" ${strip} --remove-section=.comment
                          "--add-gnu-debuglink=${dbg}" "${path}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "rumor: stripping ${path} failed")
  endif()
  message(STATUS "Stripped: ${path} (debug info: build id ${id})")
endfunction()

# rumor_install_debug(SRC PREFIX): the `debug` component's file for SRC.
function(rumor_install_debug src prefix)
  rumor_debug_file("${src}" dbg id)
  string(SUBSTRING "${id}" 0 2 dir)
  file(INSTALL "${dbg}" DESTINATION "${prefix}/lib/debug/.build-id/${dir}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endfunction()
