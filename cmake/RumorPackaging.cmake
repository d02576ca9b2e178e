# What `cmake --install` puts beside the library (README "Installing"): the `rumor` binary and
# librumor.so stripped, their debug information (component `debug`), the man pages and the bash
# completion.

option(RUMOR_INSTALL_SPLIT_DEBUG
       "Install stripped binaries with their debug information in lib/debug (component debug). \
Off for Debian packaging, where dh_strip does the same." ON)
set(RUMOR_BASH_COMPLETIONDIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
    "Where the bash completion goes, relative to the prefix (bash-completion looks in \
\$XDG_DATA_DIRS/bash-completion/completions)")

# ---- Stripped binaries, debug information apart ----
if(RUMOR_INSTALL_SPLIT_DEBUG)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/RumorSplitDebug.cmake
                 ${PROJECT_BINARY_DIR}/RumorSplitDebug.cmake COPYONLY)
  set(_split "set(RUMOR_OBJCOPY \"${CMAKE_OBJCOPY}\")
set(RUMOR_READELF \"${CMAKE_READELF}\")
set(RUMOR_DEBUG_STAGING \"${PROJECT_BINARY_DIR}/debuginfo\")
include(\"${PROJECT_BINARY_DIR}/RumorSplitDebug.cmake\")")
  set(_strip_targets rumor_library)
  if(TARGET rumor)
    list(APPEND _strip_targets rumor)
  endif()
  foreach(_t IN LISTS _strip_targets)
    # The build id names the debug file; Debian's toolchains add one anyway, say so explicitly.
    target_link_options(${_t} PRIVATE LINKER:--build-id=sha1)
    get_target_property(_type ${_t} TYPE)
    if(_type STREQUAL "EXECUTABLE")
      set(_dest ${CMAKE_INSTALL_BINDIR})
      set(_kind executable)
    else()
      set(_dest ${CMAKE_INSTALL_LIBDIR})
      set(_kind library)
    endif()
    # After install(TARGETS) of the same component (rules run in the order they are declared).
    install(CODE "${_split}
rumor_strip_installed(\"$<TARGET_FILE:${_t}>\"
  \"\${CMAKE_INSTALL_PREFIX}/${_dest}/$<TARGET_FILE_NAME:${_t}>\" ${_kind})")
    install(CODE "${_split}
rumor_install_debug(\"$<TARGET_FILE:${_t}>\" \"\${CMAKE_INSTALL_PREFIX}\")" COMPONENT debug)
  endforeach()
endif()

# ---- Man pages (docs/man/*.1, written by hand: see docs/man/README.md) ----
file(GLOB RUMOR_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/man/*.1)
install(FILES ${RUMOR_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

# ---- bash completion ----
install(FILES ${PROJECT_SOURCE_DIR}/dist/bash-completion/rumor
        DESTINATION ${RUMOR_BASH_COMPLETIONDIR})
