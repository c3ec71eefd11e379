"""ctypes declarations of the part of llama.h / ggml-backend.h that shimmy_py uses.

Each struct and function sits beside its C declaration. Nothing here is
trusted: runtime.lib() compares every struct against the layout that
native/probe.c printed when compiled from the same headers as the libraries,
and refuses a library whose layout differs (layout.py). Only this package
(the binding and the owners of each pointer) touches raw pointers.
"""
from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_float,
    c_int8,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_void_p,
)

from ..errors import NativeError

llama_token = c_int32
llama_pos = c_int32
llama_seq_id = c_int32

# typedef bool (*llama_progress_callback)(float progress, void * user_data);
llama_progress_callback = CFUNCTYPE(c_bool, c_float, c_void_p)
# typedef void (*ggml_log_callback)(enum ggml_log_level level, const char * text, void * user_data);
ggml_log_callback = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)
# typedef bool (*ggml_abort_callback)(void * data);
ggml_abort_callback = CFUNCTYPE(c_bool, c_void_p)
# typedef bool (*ggml_backend_sched_eval_callback)(struct ggml_tensor * t, bool ask, void * user_data);
ggml_backend_sched_eval_callback = CFUNCTYPE(c_bool, c_void_p, c_bool, c_void_p)


# struct llama_model_tensor_buft_override { const char * pattern; ggml_backend_buffer_type_t buft; };
class llama_model_tensor_buft_override(Structure):
    _fields_ = [("pattern", c_char_p), ("buft", c_void_p)]


# struct llama_model_params { ... };  (llama.h)
class llama_model_params(Structure):
    _fields_ = [
        ("devices", c_void_p),                          # ggml_backend_dev_t *
        ("tensor_buft_overrides", POINTER(llama_model_tensor_buft_override)),
        ("n_gpu_layers", c_int32),
        ("split_mode", c_int32),                        # enum llama_split_mode
        ("load_mode", c_int32),                         # enum llama_load_mode
        ("lazy_mode", c_int32),                         # enum llama_lazy_mode
        ("main_gpu", c_int32),
        ("tensor_split", POINTER(c_float)),
        ("progress_callback", llama_progress_callback),
        ("progress_callback_user_data", c_void_p),
        ("kv_overrides", c_void_p),                     # const struct llama_model_kv_override *
        ("vocab_only", c_bool),
        ("check_tensors", c_bool),
        ("use_extra_bufts", c_bool),
        ("no_host", c_bool),
        ("no_alloc", c_bool),
        ("load_mtp", c_bool),
    ]


# struct llama_context_params { ... };  (llama.h)
class llama_context_params(Structure):
    _fields_ = [
        ("n_ctx", c_uint32), ("n_batch", c_uint32), ("n_ubatch", c_uint32), ("n_seq_max", c_uint32),
        ("n_rs_seq", c_uint32), ("n_outputs_max", c_uint32), ("n_outputs_max_per_seq", c_uint32),
        ("n_threads", c_int32), ("n_threads_batch", c_int32),
        ("ctx_type", c_int32), ("rope_scaling_type", c_int32), ("pooling_type", c_int32),
        ("attention_type", c_int32), ("flash_attn_type", c_int32),
        ("rope_freq_base", c_float), ("rope_freq_scale", c_float), ("yarn_ext_factor", c_float),
        ("yarn_attn_factor", c_float), ("yarn_beta_fast", c_float), ("yarn_beta_slow", c_float),
        ("yarn_orig_ctx", c_uint32), ("defrag_thold", c_float),
        ("cb_eval", c_void_p), ("cb_eval_user_data", c_void_p),
        ("type_k", c_int32), ("type_v", c_int32),
        ("abort_callback", ggml_abort_callback), ("abort_callback_data", c_void_p),
        ("embeddings", c_bool), ("offload_kqv", c_bool), ("no_perf", c_bool), ("op_offload", c_bool),
        ("swa_full", c_bool), ("kv_unified", c_bool),
        ("samplers", c_void_p), ("n_samplers", c_size_t),
        ("ctx_other", c_void_p),
    ]


# struct ggml_tensor { enum ggml_type type; ggml_backend_buffer * buffer; int64_t ne[4]; size_t nb[4];
#     enum ggml_op op; int32_t op_params[16]; int32_t flags; ggml_tensor * src[10]; ggml_tensor * view_src;
#     size_t view_offs; void * data; char name[64]; void * extra; char padding[8]; };  (ggml.h)
class ggml_tensor(Structure):
    _fields_ = [
        ("type", c_int32), ("buffer", c_void_p), ("ne", c_int64 * 4), ("nb", c_size_t * 4),
        ("op", c_int32), ("op_params", c_int32 * 16), ("flags", c_int32), ("src", c_void_p * 10),
        ("view_src", c_void_p), ("view_offs", c_size_t), ("data", c_void_p), ("name", ctypes.c_char * 64),
        ("extra", c_void_p), ("padding", ctypes.c_char * 8),
    ]


# typedef struct llama_batch { int32_t n_tokens; llama_token * token; float * embd; llama_pos * pos;
#                              int32_t * n_seq_id; llama_seq_id ** seq_id; int8_t * logits; } llama_batch;
class llama_batch(Structure):
    _fields_ = [
        ("n_tokens", c_int32), ("token", POINTER(llama_token)), ("embd", POINTER(c_float)),
        ("pos", POINTER(llama_pos)), ("n_seq_id", POINTER(c_int32)),
        ("seq_id", POINTER(POINTER(llama_seq_id))), ("logits", POINTER(c_int8)),
    ]


# typedef struct llama_sampler_chain_params { bool no_perf; } llama_sampler_chain_params;
class llama_sampler_chain_params(Structure):
    _fields_ = [("no_perf", c_bool)]


# typedef struct llama_logit_bias { llama_token token; float bias; } llama_logit_bias;
class llama_logit_bias(Structure):
    _fields_ = [("token", llama_token), ("bias", c_float)]


# typedef struct llama_chat_message { const char * role; const char * content; } llama_chat_message;
class llama_chat_message(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


# struct llama_embd { const float * data; size_t n_rows; size_t n_embd; };  (llama.h, the extended batch)
class llama_embd(Structure):
    _fields_ = [("data", POINTER(c_float)), ("n_rows", c_size_t), ("n_embd", c_size_t)]


# typedef struct llama_token_data { llama_token id; float logit; float p; } llama_token_data;
class llama_token_data(Structure):
    _fields_ = [("id", llama_token), ("logit", c_float), ("p", c_float)]


# typedef struct llama_token_data_array { llama_token_data * data; size_t size; int64_t selected; bool sorted; }
class llama_token_data_array(Structure):
    _fields_ = [("data", POINTER(llama_token_data)), ("size", c_size_t), ("selected", c_int64), ("sorted", c_bool)]


STRUCTS = (llama_model_tensor_buft_override, llama_model_params, llama_context_params, llama_batch,
           llama_sampler_chain_params, llama_logit_bias, llama_chat_message, llama_embd, ggml_tensor,
           llama_token_data, llama_token_data_array)

# name: (restype, argtypes), each under its C prototype.
_LLAMA = {
    # void llama_backend_init(void);
    "llama_backend_init": (None, []),
    # void llama_log_set(ggml_log_callback log_callback, void * user_data);
    "llama_log_set": (None, [ggml_log_callback, c_void_p]),
    # struct llama_model_params llama_model_default_params(void);
    "llama_model_default_params": (llama_model_params, []),
    # struct llama_context_params llama_context_default_params(void);
    "llama_context_default_params": (llama_context_params, []),
    # struct llama_sampler_chain_params llama_sampler_chain_default_params(void);
    "llama_sampler_chain_default_params": (llama_sampler_chain_params, []),
    # struct llama_model * llama_model_load_from_file(const char * path_model, struct llama_model_params params);
    "llama_model_load_from_file": (c_void_p, [c_char_p, llama_model_params]),
    # void llama_model_free(struct llama_model * model);
    "llama_model_free": (None, [c_void_p]),
    # struct llama_context * llama_init_from_model(struct llama_model * model, struct llama_context_params params);
    "llama_init_from_model": (c_void_p, [c_void_p, llama_context_params]),
    # void llama_free(struct llama_context * ctx);
    "llama_free": (None, [c_void_p]),
    # size_t llama_max_devices(void);
    "llama_max_devices": (c_size_t, []),
    # uint32_t llama_n_ctx(const struct llama_context * ctx);
    "llama_n_ctx": (c_uint32, [c_void_p]),
    # uint32_t llama_n_batch(const struct llama_context * ctx);
    "llama_n_batch": (c_uint32, [c_void_p]),
    # void llama_set_n_threads(struct llama_context * ctx, int32_t n_threads, int32_t n_threads_batch);
    "llama_set_n_threads": (None, [c_void_p, c_int32, c_int32]),
    # int32_t llama_n_threads(struct llama_context * ctx);
    "llama_n_threads": (c_int32, [c_void_p]),
    # const struct llama_vocab * llama_model_get_vocab(const struct llama_model * model);
    "llama_model_get_vocab": (c_void_p, [c_void_p]),
    # int32_t llama_vocab_n_tokens(const struct llama_vocab * vocab);
    "llama_vocab_n_tokens": (c_int32, [c_void_p]),
    # int32_t llama_model_n_layer_nextn(const struct llama_model * model);
    "llama_model_n_layer_nextn": (c_int32, [c_void_p]),
    # struct llama_batch_ext * llama_batch_ext_init(struct llama_context * ctx);
    "llama_batch_ext_init": (c_void_p, [c_void_p]),
    # void llama_batch_ext_free(struct llama_batch_ext * batch);
    "llama_batch_ext_free": (None, [c_void_p]),
    # void llama_batch_ext_clear(struct llama_batch_ext * batch);
    "llama_batch_ext_clear": (None, [c_void_p]),
    # int32_t llama_batch_ext_add_token(struct llama_batch_ext * batch, llama_seq_id seq_id, llama_token id);
    "llama_batch_ext_add_token": (c_int32, [c_void_p, llama_seq_id, llama_token]),
    # bool llama_batch_ext_set_pos(struct llama_batch_ext * batch, int32_t idx, const llama_pos * pos);
    "llama_batch_ext_set_pos": (c_bool, [c_void_p, c_int32, POINTER(llama_pos)]),
    # bool llama_batch_ext_set_embd_token(struct llama_batch_ext * batch, int32_t idx, struct llama_embd embd);
    "llama_batch_ext_set_embd_token": (c_bool, [c_void_p, c_int32, llama_embd]),
    # bool llama_batch_ext_set_output_logits(struct llama_batch_ext * batch, int32_t idx, bool value);
    "llama_batch_ext_set_output_logits": (c_bool, [c_void_p, c_int32, c_bool]),
    # int32_t llama_process(struct llama_context * ctx, enum llama_process_type type, struct llama_batch_ext * batch);
    "llama_process": (c_int32, [c_void_p, c_int32, c_void_p]),
    # int32_t llama_model_n_embd_out(const struct llama_model * model);
    "llama_model_n_embd_out": (c_int32, [c_void_p]),
    # llama_token llama_vocab_bos(const struct llama_vocab * vocab);
    "llama_vocab_bos": (llama_token, [c_void_p]),
    # llama_token llama_vocab_eos(const struct llama_vocab * vocab);
    "llama_vocab_eos": (llama_token, [c_void_p]),
    # bool llama_vocab_get_add_bos(const struct llama_vocab * vocab);
    "llama_vocab_get_add_bos": (c_bool, [c_void_p]),
    # bool llama_vocab_get_add_eos(const struct llama_vocab * vocab);
    "llama_vocab_get_add_eos": (c_bool, [c_void_p]),
    # bool llama_vocab_is_eog(const struct llama_vocab * vocab, llama_token token);
    "llama_vocab_is_eog": (c_bool, [c_void_p, llama_token]),
    # const char * llama_model_chat_template(const struct llama_model * model, const char * name);
    "llama_model_chat_template": (c_char_p, [c_void_p, c_char_p]),
    # int32_t llama_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len,
    #                        llama_token * tokens, int32_t n_tokens_max, bool add_special, bool parse_special);
    "llama_tokenize": (c_int32, [c_void_p, c_char_p, c_int32, POINTER(llama_token), c_int32, c_bool, c_bool]),
    # int32_t llama_token_to_piece(const struct llama_vocab * vocab, llama_token token, char * buf,
    #                              int32_t length, int32_t lstrip, bool special);
    "llama_token_to_piece": (c_int32, [c_void_p, llama_token, c_char_p, c_int32, c_int32, c_bool]),
    # int32_t llama_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens,
    #                          char * text, int32_t text_len_max, bool remove_special, bool unparse_special);
    "llama_detokenize": (c_int32, [c_void_p, POINTER(llama_token), c_int32, c_char_p, c_int32, c_bool, c_bool]),
    # int32_t llama_chat_apply_template(const char * tmpl, const struct llama_chat_message * chat, size_t n_msg,
    #                                   bool add_ass, char * buf, int32_t length);
    "llama_chat_apply_template": (c_int32, [c_char_p, POINTER(llama_chat_message), c_size_t, c_bool,
                                            c_char_p, c_int32]),
    # struct llama_batch llama_batch_init(int32_t n_tokens, int32_t embd, int32_t n_seq_max);
    "llama_batch_init": (llama_batch, [c_int32, c_int32, c_int32]),
    # void llama_batch_free(struct llama_batch batch);
    "llama_batch_free": (None, [llama_batch]),
    # int32_t llama_decode(struct llama_context * ctx, struct llama_batch batch);
    "llama_decode": (c_int32, [c_void_p, llama_batch]),
    # float * llama_get_logits_ith(struct llama_context * ctx, int32_t i);
    # (an address: ContextHandle keeps a view per address it has seen)
    "llama_get_logits_ith": (c_void_p, [c_void_p, c_int32]),
    # float * llama_get_embeddings_seq(struct llama_context * ctx, llama_seq_id seq_id);
    "llama_get_embeddings_seq": (POINTER(c_float), [c_void_p, c_int32]),
    # enum llama_pooling_type llama_pooling_type(const struct llama_context * ctx);
    "llama_pooling_type": (c_int32, [c_void_p]),
    # llama_memory_t llama_get_memory(const struct llama_context * ctx);
    "llama_get_memory": (c_void_p, [c_void_p]),
    # void llama_memory_clear(llama_memory_t mem, bool data);
    "llama_memory_clear": (None, [c_void_p, c_bool]),
    # bool llama_memory_seq_rm(llama_memory_t mem, llama_seq_id seq_id, llama_pos p0, llama_pos p1);
    "llama_memory_seq_rm": (c_bool, [c_void_p, llama_seq_id, llama_pos, llama_pos]),
    # void llama_memory_seq_cp(llama_memory_t mem, llama_seq_id seq_id_src, llama_seq_id seq_id_dst,
    #                          llama_pos p0, llama_pos p1);
    "llama_memory_seq_cp": (None, [c_void_p, llama_seq_id, llama_seq_id, llama_pos, llama_pos]),
    # size_t llama_state_seq_get_size(struct llama_context * ctx, llama_seq_id seq_id);
    "llama_state_seq_get_size": (c_size_t, [c_void_p, llama_seq_id]),
    # size_t llama_state_seq_get_data(struct llama_context * ctx, uint8_t * dst, size_t size, llama_seq_id seq_id);
    "llama_state_seq_get_data": (c_size_t, [c_void_p, c_char_p, c_size_t, llama_seq_id]),
    # size_t llama_state_seq_set_data(struct llama_context * ctx, const uint8_t * src, size_t size,
    #                                 llama_seq_id dest_seq_id);
    "llama_state_seq_set_data": (c_size_t, [c_void_p, c_char_p, c_size_t, llama_seq_id]),
    # struct llama_sampler * llama_sampler_chain_init(struct llama_sampler_chain_params params);
    "llama_sampler_chain_init": (c_void_p, [llama_sampler_chain_params]),
    # void llama_sampler_chain_add(struct llama_sampler * chain, struct llama_sampler * smpl);
    "llama_sampler_chain_add": (None, [c_void_p, c_void_p]),
    # struct llama_sampler * llama_sampler_init_greedy(void);
    "llama_sampler_init_greedy": (c_void_p, []),
    # struct llama_sampler * llama_sampler_init_dist(uint32_t seed);
    "llama_sampler_init_dist": (c_void_p, [c_uint32]),
    # struct llama_sampler * llama_sampler_init_top_k(int32_t k);
    "llama_sampler_init_top_k": (c_void_p, [c_int32]),
    # struct llama_sampler * llama_sampler_init_top_p(float p, size_t min_keep);
    "llama_sampler_init_top_p": (c_void_p, [c_float, c_size_t]),
    # struct llama_sampler * llama_sampler_init_min_p(float p, size_t min_keep);
    "llama_sampler_init_min_p": (c_void_p, [c_float, c_size_t]),
    # struct llama_sampler * llama_sampler_init_temp(float t);
    "llama_sampler_init_temp": (c_void_p, [c_float]),
    # struct llama_sampler * llama_sampler_init_penalties(int32_t n_vocab, int32_t penalty_last_n,
    #                        float penalty_repeat, float penalty_freq, float penalty_present);
    "llama_sampler_init_penalties": (c_void_p, [c_int32, c_int32, c_float, c_float, c_float]),
    # struct llama_sampler * llama_sampler_init_logit_bias(int32_t n_vocab, int32_t n_logit_bias,
    #                                                      const llama_logit_bias * logit_bias);
    "llama_sampler_init_logit_bias": (c_void_p, [c_int32, c_int32, POINTER(llama_logit_bias)]),
    # struct llama_sampler * llama_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar_str,
    #                                                  const char * grammar_root);
    "llama_sampler_init_grammar": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    # struct llama_sampler * llama_sampler_init_grammar_lazy_patterns(const struct llama_vocab * vocab,
    #     const char * grammar_str, const char * grammar_root, const char ** trigger_patterns,
    #     size_t num_trigger_patterns, const llama_token * trigger_tokens, size_t num_trigger_tokens);
    "llama_sampler_init_grammar_lazy_patterns": (c_void_p, [c_void_p, c_char_p, c_char_p, POINTER(c_char_p),
                                                            c_size_t, POINTER(llama_token), c_size_t]),
    # llama_token llama_sampler_sample(struct llama_sampler * smpl, struct llama_context * ctx, int32_t idx);
    "llama_sampler_sample": (llama_token, [c_void_p, c_void_p, c_int32]),
    # void llama_sampler_accept(struct llama_sampler * smpl, llama_token token);
    "llama_sampler_accept": (None, [c_void_p, llama_token]),
    # void llama_sampler_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p);
    "llama_sampler_apply": (None, [c_void_p, POINTER(llama_token_data_array)]),
    # void llama_sampler_free(struct llama_sampler * smpl);
    "llama_sampler_free": (None, [c_void_p]),
}

# llama.cpp's staging API (src/llama-ext.h: C++ linkage, so bound by mangled name), for MTP drafting:
# name: (symbol, restype, argtypes)
_LLAMA_STAGING = {
    # void llama_set_embeddings_nextn(llama_context * ctx, bool value, bool masked);
    "llama_set_embeddings_nextn": ("_Z26llama_set_embeddings_nextnP13llama_contextbb", None,
                                   [c_void_p, c_bool, c_bool]),
    # float * llama_get_embeddings_nextn(llama_context * ctx);
    "llama_get_embeddings_nextn": ("_Z26llama_get_embeddings_nextnP13llama_context", POINTER(c_float), [c_void_p]),
    # float * llama_get_embeddings_nextn_ith(llama_context * ctx, int32_t i);
    "llama_get_embeddings_nextn_ith": ("_Z30llama_get_embeddings_nextn_ithP13llama_contexti", POINTER(c_float),
                                       [c_void_p, c_int32]),
}

_GGML_BASE = {
    # void ggml_backend_tensor_get(const struct ggml_tensor * tensor, void * data, size_t offset, size_t size);
    "ggml_backend_tensor_get": (None, [c_void_p, c_void_p, c_size_t, c_size_t]),
    # const char * ggml_version(void);
    "ggml_version": (c_char_p, []),
    # const char * ggml_backend_dev_name(ggml_backend_dev_t device);
    "ggml_backend_dev_name": (c_char_p, [c_void_p]),
    # const char * ggml_backend_dev_description(ggml_backend_dev_t device);
    "ggml_backend_dev_description": (c_char_p, [c_void_p]),
    # void ggml_backend_dev_memory(ggml_backend_dev_t device, size_t * free, size_t * total);
    "ggml_backend_dev_memory": (None, [c_void_p, POINTER(c_size_t), POINTER(c_size_t)]),
    # enum ggml_backend_dev_type ggml_backend_dev_type(ggml_backend_dev_t device);
    "ggml_backend_dev_type": (c_int32, [c_void_p]),
    # ggml_backend_buffer_type_t ggml_backend_dev_buffer_type(ggml_backend_dev_t device);
    "ggml_backend_dev_buffer_type": (c_void_p, [c_void_p]),
    # const char * ggml_backend_buft_name(ggml_backend_buffer_type_t buft);
    "ggml_backend_buft_name": (c_char_p, [c_void_p]),
    # ggml_backend_buffer_type_t ggml_backend_cpu_buffer_type(void);
    "ggml_backend_cpu_buffer_type": (c_void_p, []),
}

_GGML = {
    # size_t ggml_backend_dev_count(void);
    "ggml_backend_dev_count": (c_size_t, []),
    # ggml_backend_dev_t ggml_backend_dev_get(size_t index);
    "ggml_backend_dev_get": (c_void_p, [c_size_t]),
    # void ggml_backend_register(ggml_backend_reg_t reg);
    "ggml_backend_register": (None, [c_void_p]),
}

_GGML_RPC = {
    # ggml_backend_reg_t ggml_backend_rpc_add_server(const char * endpoint);
    "ggml_backend_rpc_add_server": (c_void_p, [c_char_p]),
}

# enum ggml_backend_dev_type { CPU, GPU, IGPU, ACCEL, META };
DEV_TYPE_NAMES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


# libshimmy_tap.so (native/tap_filter.c, built by native/build.sh beside the libraries)
_SHIMMY_TAP = {
    "shimmy_tap_eval": (c_bool, [c_void_p, c_bool, c_void_p]),
    "shimmy_tap_size": (c_size_t, []),
    "shimmy_tap_names_offset": (c_size_t, []),
    "shimmy_tap_max_names": (c_int32, []),
    "shimmy_tap_max_name": (c_int32, []),
}


class Lib:
    """The loaded libraries with typed functions as attributes."""

    def __init__(self, lib_dir):
        self.lib_dir = lib_dir
        handles = {}
        for name in ("ggml-base", "ggml", "ggml-cpu", "ggml-rpc", "llama"):
            path = lib_dir / f"lib{name}.so"
            try:
                handles[name] = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise NativeError(f"cannot load {path}: {e}") from None
        self._bind(handles["llama"], _LLAMA, "libllama.so")
        self._bind(handles["llama"], {name: (restype, args) for name, (_, restype, args) in _LLAMA_STAGING.items()},
                   "libllama.so", {name: symbol for name, (symbol, _, _) in _LLAMA_STAGING.items()})
        self._bind(handles["ggml-base"], _GGML_BASE, "libggml-base.so")
        self._bind(handles["ggml"], _GGML, "libggml.so")
        self._bind(handles["ggml-rpc"], _GGML_RPC, "libggml-rpc.so")

    def _bind(self, handle, table, soname, symbols: dict | None = None) -> None:
        for name, (restype, argtypes) in table.items():
            try:
                fn = getattr(handle, (symbols or {}).get(name, name))
            except AttributeError:
                raise NativeError(f"{self.lib_dir}/{soname} has no function {name}: "
                                  "a library of another llama.cpp version; rebuild with `make native`") from None
            fn.restype, fn.argtypes = restype, argtypes
            setattr(self, name, fn)


class TapFilterLib(Lib):
    """The graph tap's C filter (native/tap_filter.c), loaded on first use:
    only tracing needs it."""

    def __init__(self, lib_dir):
        self.lib_dir = lib_dir
        path = lib_dir / "libshimmy_tap.so"
        try:
            handle = ctypes.CDLL(str(path))
        except OSError as e:
            raise NativeError(f"cannot load {path}: {e}; native/build.sh builds it (`make native`)") from None
        self._bind(handle, _SHIMMY_TAP, "libshimmy_tap.so")
