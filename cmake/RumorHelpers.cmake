# Small helpers so every target is declared the same way ("CMake targets through
# small helpers").

function(rumor_setup_warnings_and_sanitizers)
  add_compile_options(-Wall -Wextra -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # g++ 12 -O3 reports std::string concatenation as overlapping memcpy (GCC PR105651), a
    # false positive in libstdc++ itself.
    add_compile_options(-Wno-restrict)
  endif()
  if(RUMOR_WERROR)
    add_compile_options(-Werror)
  endif()
  if(RUMOR_FUZZ)
    # Coverage instrumentation in every library, not only in the fuzz targets' own files:
    # otherwise libFuzzer sees a few dozen edges and cannot steer into the decoders.
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
  if(RUMOR_SANITIZE)
    string(REPLACE ";" "," _san "${RUMOR_SANITIZE}")
    add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    add_link_options(-fsanitize=${_san})
  endif()
  # Hot paths are tuned for the development machine's class (x86-64 v3: AVX2). Portable builds
  # can set CMAKE_CXX_FLAGS themselves.
  if(NOT RUMOR_PORTABLE)
    add_compile_options(-march=x86-64-v3)
  endif()
endfunction()

# rumor_add_library(name SOURCES ... DEPS ...)
function(rumor_add_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_link_libraries(${name} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_DEPS})
endfunction()

# rumor_add_test(name SOURCES ... [DEPS ...] [LABELS ...] [TIMEOUT s])
# Each test is its own GoogleTest binary registered with CTest under its name.
function(rumor_add_test name)
  cmake_parse_arguments(A "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main
                        rapidcheck rapidcheck_gtest Threads::Threads)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}")
endfunction()

# rumor_add_fuzz(name SOURCES ... DEPS ...): a libFuzzer target under the fuzz preset; under
# every other preset the same source is linked into a replay driver that runs the committed
# corpus, so the corpus stays a regression test everywhere.
function(rumor_add_fuzz name)
  cmake_parse_arguments(A "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  if(RUMOR_FUZZ)
    add_executable(${name} ${A_SOURCES})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE ${A_DEPS})
  elseif(RUMOR_TESTS)
    add_executable(${name}-replay ${A_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    target_link_libraries(${name}-replay PRIVATE ${A_DEPS})
    add_test(NAME ${name}-replay COMMAND ${name}-replay ${A_CORPUS})
    set_tests_properties(${name}-replay PROPERTIES TIMEOUT 120 LABELS "fuzz-replay")
  endif()
endfunction()

# rumor_add_layer(name DEPS ... PUBLIC_DEPS ...): one library per layer folder, from every .cc
# in the calling folder. Globbing keeps layers that grow in parallel out of each other's
# CMakeLists; CONFIGURE_DEPENDS re-globs when files are added.
function(rumor_add_layer name)
  cmake_parse_arguments(A "" "" "DEPS;PUBLIC_DEPS" ${ARGN})
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  if(_srcs)
    rumor_add_library(${name} SOURCES ${_srcs} DEPS ${A_DEPS} PUBLIC_DEPS ${A_PUBLIC_DEPS})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}> $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>)
    target_link_libraries(${name} INTERFACE ${A_PUBLIC_DEPS})
  endif()
endfunction()
