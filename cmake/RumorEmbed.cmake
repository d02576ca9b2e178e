# cmake -DINPUT=file -DOUTPUT=file.cc -DSYMBOL=name -P RumorEmbed.cmake
# Writes a C++ source defining `extern "C" const unsigned char SYMBOL[]` with INPUT's bytes and
# `SYMBOL_size`: how the XDP program's object file is embedded in the library without xxd.
file(READ "${INPUT}" _hex HEX)
string(LENGTH "${_hex}" _len)
math(EXPR _bytes "${_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _arr "${_hex}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n  " _arr "${_arr}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/RumorEmbed.cmake. Do not edit.\n"
  "extern \"C\" {\nextern const unsigned char ${SYMBOL}[];\nextern const unsigned long ${SYMBOL}_size;\n"
  "alignas(8) const unsigned char ${SYMBOL}[] = {\n  ${_arr}\n};\n"
  "const unsigned long ${SYMBOL}_size = ${_bytes};\n}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
