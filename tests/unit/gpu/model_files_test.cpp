// The engine's model files: F16/BF16 conversions, safetensors round trips and checks,
// config.json parsing, llama3 RoPE frequencies.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "gpu/model.hpp"
#include "gpu/safetensors.hpp"

using namespace tollgate::gpu;

TEST_CASE("half-precision conversions round to nearest even and keep special values") {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    CHECK(f16_to_f32(f32_to_f16(v)) == v);
  }
  CHECK(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  CHECK(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  CHECK(f16_to_f32(f32_to_f16(1.0f + 1.0f / 4096)) == 1.0f);  // a tie rounds to even
  for (float v : {0.0f, 1.0f, -3.0f, 1.5f, std::ldexp(1.0f, 100)})
    CHECK(bf16_to_f32(f32_to_bf16(v)) == v);
  CHECK(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);  // a tie rounds to even
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  // Every F16 bit pattern that is a finite number survives F16 -> F32 -> F16.
  for (unsigned b = 0; b < 0x10000; ++b) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(b));
    if (std::isfinite(f)) REQUIRE(f32_to_f16(f) == b);
  }
}

TEST_CASE("safetensors files round-trip and bad ones are refused naming the tensor") {
  const std::string path = "/tmp/tollgate-unit-test.safetensors";
  std::string error;
  REQUIRE(write_safetensors(path,
                            {{"a", dtype::f32, {2, 3}, {1, 2, 3, 4, 5, 6}},
                             {"b", dtype::bf16, {2}, {0.5f, -8}},
                             {"c", dtype::f16, {1, 1}, {0.25f}}},
                            error));
  auto f = safetensors_file::open(path);
  REQUIRE(f);
  CHECK(f->tensors().size() == 3);
  CHECK(*f->read("a", {2, 3}) == std::vector<float>{1, 2, 3, 4, 5, 6});
  CHECK(*f->read("b", {2}) == std::vector<float>{0.5f, -8});
  CHECK(*f->read("c", {1, 1}) == std::vector<float>{0.25f});
  CHECK_THAT(f->read("a", {3, 2}).error().message,
             Catch::Contains("has shape [2, 3], expected [3, 2]"));
  CHECK_THAT(f->read("z", {1}).error().message, Catch::Contains("tensor `z` is missing"));

  const auto write_raw = [&](const std::string& header, std::size_t data_bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    std::uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(data_bytes, '\0');
  };
  write_raw(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  CHECK_THAT(safetensors_file::open(path).error().message,
             Catch::Contains("tensor `w` lies past the end of the file"));
  write_raw(R"({"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4);
  CHECK_THAT(safetensors_file::open(path).error().message, Catch::Contains("dtype `I8`"));
  write_raw(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  CHECK_THAT(safetensors_file::open(path).error().message, Catch::Contains("needs 12"));
  write_raw(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      12);
  CHECK_THAT(safetensors_file::open(path).error().message, Catch::Contains("overlap"));
  write_raw("[]", 0);
  CHECK_THAT(safetensors_file::open(path).error().message, Catch::Contains("not a JSON object"));
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "abc";
  }
  CHECK_THAT(safetensors_file::open(path).error().message, Catch::Contains("truncated"));
  std::remove(path.c_str());
}

TEST_CASE("config.json is parsed and checked") {
  const auto c = parse_model_config(
      R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,
          "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
          "num_key_value_heads":2,"rope_theta":500000.0,"rms_norm_eps":1e-5,"eos_token_id":7,
          "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
          "high_freq_factor":4.0,"original_max_position_embeddings":64}})",
      R"({"eos_token_id":[8,9]})");
  REQUIRE(c);
  CHECK(c->head_dim == 16);
  CHECK(c->num_kv_heads == 2);
  CHECK(c->rope_llama3);
  CHECK(c->eos_token_ids == std::vector<int>{8, 9});  // generation_config.json wins
  CHECK_FALSE(c->attention_bias);
  // llama3 scaling: the highest frequency is kept, the lowest divided by the factor.
  model_config plain = *c;
  plain.rope_llama3 = false;
  const auto scaled = rope_inverse_frequencies(*c);
  const auto unscaled = rope_inverse_frequencies(plain);
  CHECK(scaled.front() == unscaled.front());
  CHECK(scaled.back() == Approx(unscaled.back() / 8));

  const auto error_of = [](const std::string& json) {
    const auto r = parse_model_config(json, "");
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK_THAT(error_of("{}"), Catch::Contains("architecture"));
  CHECK_THAT(error_of(R"({"architectures":["LlamaForCausalLM"]})"), Catch::Contains("vocab_size"));
  CHECK_THAT(error_of(R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":64,
      "intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3})"),
             Catch::Contains("multiple"));
  CHECK_THAT(error_of(R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":10,"hidden_size":64,
      "intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":4,"eos_token_id":10})"),
             Catch::Contains("outside the vocabulary"));
  CHECK_THAT(error_of("not json"), Catch::Contains("not a JSON object"));
}
