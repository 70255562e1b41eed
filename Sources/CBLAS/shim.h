// System-library shim: OpenBLAS's CBLAS interface, found through pkg-config
// (`openblas`). This target provides no Swift API of its own.
#include <cblas.h>
