// CUDA_CHECK and CUBLAS_CHECK: a failed CUDA runtime or cuBLAS call throws std::runtime_error
// naming the file, the line, the call and the error. For the CUDA sources of gpu/.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#define CUDA_CHECK(call)                                                                \
  do {                                                                                  \
    const cudaError_t err_ = (call);                                                    \
    if (err_ != cudaSuccess) {                                                          \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                               ": " #call ": " + cudaGetErrorString(err_));             \
    }                                                                                   \
  } while (0)

#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    const cublasStatus_t st_ = (call);                                                    \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                   \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) +   \
                               ": " #call ": cuBLAS status " + std::to_string(int(st_))); \
    }                                                                                     \
  } while (0)
