# What `cmake --install` puts beside the library (README "Installing"): the `rumor` binary and
# librumor.so stripped, their debug information (component `debug`), the man pages, the bash
# completion, the systemd unit and a default agent configuration.

option(RUMOR_INSTALL_SPLIT_DEBUG
       "Install stripped binaries with their debug information in lib/debug (component debug). \
Off for Debian packaging, where dh_strip does the same." ON)
set(RUMOR_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "Where the systemd unit goes, relative to the prefix (systemd reads /usr/lib/systemd/system \
and /usr/local/lib/systemd/system)")
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

# ---- systemd unit and the configuration it starts the agent with ----
# Written at install time, so the paths in it follow `cmake --install --prefix` (and DESTDIR
# stays out of them). The configuration file is installed only where none exists: it is the
# operator's to edit, and a reinstall must not overwrite it.
install(CODE "
set(_prefix \"\${CMAKE_INSTALL_PREFIX}\")
if(IS_ABSOLUTE \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(RUMOR_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
elseif(_prefix STREQUAL \"/usr\")
  set(RUMOR_SYSCONFDIR /etc)  # as GNUInstallDirs: /usr's configuration lives in /etc
else()
  set(RUMOR_SYSCONFDIR \"\${_prefix}/${CMAKE_INSTALL_SYSCONFDIR}\")
endif()
set(RUMOR_BINDIR \"\${_prefix}/${CMAKE_INSTALL_BINDIR}\")
configure_file(\"${PROJECT_SOURCE_DIR}/dist/systemd/rumor.service.in\"
               \"${PROJECT_BINARY_DIR}/dist/rumor.service\" @ONLY)
file(INSTALL \"${PROJECT_BINARY_DIR}/dist/rumor.service\"
     DESTINATION \"\${_prefix}/${RUMOR_SYSTEMD_UNITDIR}\")
if(EXISTS \"\$ENV{DESTDIR}\${RUMOR_SYSCONFDIR}/rumor/rumor.toml\")
  message(STATUS \"Kept: \$ENV{DESTDIR}\${RUMOR_SYSCONFDIR}/rumor/rumor.toml (already there)\")
else()
  file(INSTALL \"${PROJECT_SOURCE_DIR}/dist/rumor.toml\" DESTINATION \"\${RUMOR_SYSCONFDIR}/rumor\")
endif()
")
