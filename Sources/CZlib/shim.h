// System-library shim: zlib's gzip file interface (gzopen/gzread), found
// through pkg-config (`zlib`). Used to read the *-ubyte.gz IDX files of
// Debian's dataset-fashion-mnist. This target provides no Swift API of its own.
#include <zlib.h>
