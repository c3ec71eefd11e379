/* Struct layout probe: compiled by native/build.sh against the same headers as
 * the libraries it builds, it prints sizeof and offsetof for every struct that
 * shimmy_py/native/binding.py declares with ctypes. The binding refuses to load when its
 * declarations disagree with this output (see shimmy_py/native/layout.py). */
#include <stddef.h>
#include <stdio.h>
#include "llama.h"

static int first_struct = 1;
static int first_field;

static void open_struct(const char *name, size_t size) {
    printf("%s\n  \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "{" : ",", name, size);
    first_struct = 0;
    first_field = 1;
}
static void field(const char *name, size_t offset) {
    printf("%s\"%s\": %zu", first_field ? "" : ", ", name, offset);
    first_field = 0;
}
static void close_struct(void) { printf("}}"); }

#define STRUCT(T) open_struct(#T, sizeof(struct T))
#define FIELD(T, F) field(#F, offsetof(struct T, F))

int main(void) {
    STRUCT(llama_model_tensor_buft_override);
    FIELD(llama_model_tensor_buft_override, pattern);
    FIELD(llama_model_tensor_buft_override, buft);
    close_struct();

    STRUCT(llama_model_params);
    FIELD(llama_model_params, devices);
    FIELD(llama_model_params, tensor_buft_overrides);
    FIELD(llama_model_params, n_gpu_layers);
    FIELD(llama_model_params, split_mode);
    FIELD(llama_model_params, load_mode);
    FIELD(llama_model_params, lazy_mode);
    FIELD(llama_model_params, main_gpu);
    FIELD(llama_model_params, tensor_split);
    FIELD(llama_model_params, progress_callback);
    FIELD(llama_model_params, progress_callback_user_data);
    FIELD(llama_model_params, kv_overrides);
    FIELD(llama_model_params, vocab_only);
    FIELD(llama_model_params, check_tensors);
    FIELD(llama_model_params, use_extra_bufts);
    FIELD(llama_model_params, no_host);
    FIELD(llama_model_params, no_alloc);
    FIELD(llama_model_params, load_mtp);
    close_struct();

    STRUCT(llama_context_params);
    FIELD(llama_context_params, n_ctx);
    FIELD(llama_context_params, n_batch);
    FIELD(llama_context_params, n_ubatch);
    FIELD(llama_context_params, n_seq_max);
    FIELD(llama_context_params, n_rs_seq);
    FIELD(llama_context_params, n_outputs_max);
    FIELD(llama_context_params, n_outputs_max_per_seq);
    FIELD(llama_context_params, n_threads);
    FIELD(llama_context_params, n_threads_batch);
    FIELD(llama_context_params, ctx_type);
    FIELD(llama_context_params, rope_scaling_type);
    FIELD(llama_context_params, pooling_type);
    FIELD(llama_context_params, attention_type);
    FIELD(llama_context_params, flash_attn_type);
    FIELD(llama_context_params, rope_freq_base);
    FIELD(llama_context_params, rope_freq_scale);
    FIELD(llama_context_params, yarn_ext_factor);
    FIELD(llama_context_params, yarn_attn_factor);
    FIELD(llama_context_params, yarn_beta_fast);
    FIELD(llama_context_params, yarn_beta_slow);
    FIELD(llama_context_params, yarn_orig_ctx);
    FIELD(llama_context_params, defrag_thold);
    FIELD(llama_context_params, cb_eval);
    FIELD(llama_context_params, cb_eval_user_data);
    FIELD(llama_context_params, type_k);
    FIELD(llama_context_params, type_v);
    FIELD(llama_context_params, abort_callback);
    FIELD(llama_context_params, abort_callback_data);
    FIELD(llama_context_params, embeddings);
    FIELD(llama_context_params, offload_kqv);
    FIELD(llama_context_params, no_perf);
    FIELD(llama_context_params, op_offload);
    FIELD(llama_context_params, swa_full);
    FIELD(llama_context_params, kv_unified);
    FIELD(llama_context_params, samplers);
    FIELD(llama_context_params, n_samplers);
    FIELD(llama_context_params, ctx_other);
    close_struct();

    STRUCT(llama_batch);
    FIELD(llama_batch, n_tokens);
    FIELD(llama_batch, token);
    FIELD(llama_batch, embd);
    FIELD(llama_batch, pos);
    FIELD(llama_batch, n_seq_id);
    FIELD(llama_batch, seq_id);
    FIELD(llama_batch, logits);
    close_struct();

    STRUCT(llama_sampler_chain_params);
    FIELD(llama_sampler_chain_params, no_perf);
    close_struct();

    STRUCT(llama_logit_bias);
    FIELD(llama_logit_bias, token);
    FIELD(llama_logit_bias, bias);
    close_struct();

    STRUCT(llama_chat_message);
    FIELD(llama_chat_message, role);
    FIELD(llama_chat_message, content);
    close_struct();

    STRUCT(llama_token_data);
    FIELD(llama_token_data, id);
    FIELD(llama_token_data, logit);
    FIELD(llama_token_data, p);
    close_struct();

    STRUCT(llama_token_data_array);
    FIELD(llama_token_data_array, data);
    FIELD(llama_token_data_array, size);
    FIELD(llama_token_data_array, selected);
    FIELD(llama_token_data_array, sorted);
    close_struct();

    STRUCT(llama_embd);
    FIELD(llama_embd, data);
    FIELD(llama_embd, n_rows);
    FIELD(llama_embd, n_embd);
    close_struct();

    STRUCT(ggml_tensor);
    FIELD(ggml_tensor, type);
    FIELD(ggml_tensor, buffer);
    FIELD(ggml_tensor, ne);
    FIELD(ggml_tensor, nb);
    FIELD(ggml_tensor, op);
    FIELD(ggml_tensor, op_params);
    FIELD(ggml_tensor, flags);
    FIELD(ggml_tensor, src);
    FIELD(ggml_tensor, view_src);
    FIELD(ggml_tensor, view_offs);
    FIELD(ggml_tensor, data);
    FIELD(ggml_tensor, name);
    FIELD(ggml_tensor, extra);
    FIELD(ggml_tensor, padding);
    close_struct();

    printf("\n}\n");
    return 0;
}
