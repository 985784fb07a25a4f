// Precompiled by CMake for every translation unit: libtorch's headers dominate compile time.
#pragma once
#include <napi.h>
#include <torch/script.h>
