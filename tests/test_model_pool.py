"""One server, many models: every discovered model served by name, loaded on
demand in a worker of its own, kept for keep_alive, unloaded to make room
(--max-models), and listed by /api/ps."""
import threading
import time
from pathlib import Path

import pytest
from support.http import metric, post_json
from support.servers import config, options

from shimmy_py import Model, synth
from shimmy_py.gguf_io.tensors import read_table
from shimmy_py.serving.server import Server


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    return [synth.write(d / "alpha.gguf", "tiny", seed=1), synth.write(d / "beta.gguf", "tiny", seed=2)]


def ask(srv, model, **extra):
    return post_json(srv.url, "/api/generate", {"model": model, "prompt": "Hello", "max_tokens": 4,
                                                "temperature": 0, "stream": False, **extra})


def resident(srv):
    return [m["name"] for m in post_json(srv.url, "/api/ps", None)[1]["models"]]


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_models_load_on_demand_and_make_room(models):
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models),
                      max_models=1)
    with Server(cfg).start() as srv:
        assert resident(srv) == [] and post_json(srv.url, "/health", None)[0] == 200
        status, body = ask(srv, None)
        assert status == 400 and "'model' is required" in body["error"]
        status, a = ask(srv, "alpha")
        assert status == 200 and resident(srv) == ["alpha"]
        with Model(models[0], n_ctx=256, n_threads=2) as m:     # the same file, in this process
            assert a["response"] == m.generate("Hello", max_tokens=4, temperature=0).text
        listed = {m["name"]: m["loaded"] for m in post_json(srv.url, "/api/models", None)[1]["models"]}
        assert listed == {"alpha": True, "beta": False}
        status, b = ask(srv, "beta")                           # max 1: alpha (idle) makes room
        assert status == 200 and resident(srv) == ["beta"] and b["response"] != a["response"]
        assert metric(srv.url, "shimmy_model_loads_total") == 2
        assert metric(srv.url, "shimmy_model_unloads_total") == 1
        status, body = ask(srv, "gamma")
        assert status == 404


def test_keep_alive_per_request(models):
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models),
                      max_models=2)
    with Server(cfg).start() as srv:
        assert ask(srv, "alpha", keep_alive=0)[0] == 200
        assert wait_for(lambda: resident(srv) == [])            # unloaded after its request
        assert ask(srv, "beta", keep_alive="1s")[0] == 200
        [ps] = post_json(srv.url, "/api/ps", None)[1]["models"]
        assert ps["name"] == "beta" and ps["expires_at"] is not None and ps["devices"]
        assert wait_for(lambda: resident(srv) == [])            # expired
        assert ask(srv, "beta", keep_alive=-1)[0] == 200
        [ps] = post_json(srv.url, "/api/ps", None)[1]["models"]
        assert ps["expires_at"] is None                         # kept
        status, body = ask(srv, "alpha", keep_alive="soon")
        assert status == 400 and "keep_alive" in body["error"]


def test_a_model_loading_does_not_block_another(models):
    cfg = config(models[0], ctx=256, parallel=1, known_paths=(Path(models[1]),),
                      max_models=2)
    with Server(cfg).start() as srv:
        assert resident(srv) == ["alpha"]                       # --model: loaded at start, kept
        results = {}
        loader = threading.Thread(target=lambda: results.update(beta=ask(srv, "beta")))
        loader.start()
        for _ in range(3):                                      # alpha answers while beta loads
            assert ask(srv, "alpha")[0] == 200
        loader.join(timeout=120)
        assert results["beta"][0] == 200 and sorted(resident(srv)) == ["alpha", "beta"]
        assert ask(srv, None)[1]["model"] == "alpha"            # the --model is the default


def test_admission_by_memory_unloads_or_refuses_with_the_figures(models):
    from shimmy_py.serving.models.state import State
    probe = State(config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models)))
    need = probe.plans.need("alpha")["CPU"]             # weights and KV cache of one tiny model on the CPU
    probe.pool.close()
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models),
                      max_models=3, memory_budget={"CPU": int(need * 1.5)})
    with Server(cfg).start() as srv:
        assert ask(srv, "alpha")[0] == 200
        assert ask(srv, "beta")[0] == 200 and resident(srv) == ["beta"]   # both do not fit: alpha made room
        [ps] = post_json(srv.url, "/api/ps", None)[1]["models"]
        assert ps["planned_bytes"]["CPU"] == need
        busy = threading.Thread(target=lambda: ask(srv, "beta", max_tokens=200))
        busy.start()
        assert wait_for(lambda: post_json(srv.url, "/api/ps", None)[1]["models"][0]["active_requests"] == 1)
        status, body = ask(srv, "alpha")                                 # beta is busy: nothing to unload
        busy.join()
        assert status == 503 and "GiB on CPU" in body["error"] and "budget" in body["error"]
    small = config(None, ctx=256, parallel=1, known_paths=(Path(models[0]),),
                        memory_budget={"CPU": need // 2})
    with Server(small).start() as srv:
        status, body = ask(srv, "alpha")
        assert status == 503 and "more than the server's budget" in body["error"] and resident(srv) == []


def test_per_model_settings_from_a_config_file(models, tmp_path):
    from shimmy_py.errors import ShimmyError
    from shimmy_py.serving.models import settings as models_config
    conf = tmp_path / "models.toml"
    conf.write_text('[models.alpha]\nctx = 512\n\n[models."beta"]\nkeep_alive = "0"\n')
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models),
                      settings=models_config.load(conf))
    long_prompt = "word " * 300                                   # more than 256 tokens, less than 512
    with Server(cfg).start() as srv:
        body = {"prompt": long_prompt, "max_tokens": 2}
        assert post_json(srv.url, "/v1/completions", {"model": "alpha", **body})[0] == 200
        status, body = post_json(srv.url, "/v1/completions", {"model": "beta", **body})
        assert status == 400 and "context holds 256" in body["error"]["message"]
        assert ask(srv, "beta")[0] == 200
        assert wait_for(lambda: resident(srv) == ["alpha"])       # beta: keep_alive 0 from the file
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": {"alpha": {"n_cpu_moe": "lots"}}}')
    with pytest.raises(ShimmyError, match="'alpha': n_cpu_moe = 'lots'"):
        models_config.load(bad)
    bad.write_text('{"models": {"alpha": {"cpu-moe": true}}}')
    with pytest.raises(ShimmyError, match="unknown setting 'cpu-moe'"):
        models_config.load(bad)


@pytest.mark.parametrize("budget", [None, {"CPU": 8 << 30}])
def test_one_ggml_rpc_server_is_held_by_one_model_at_a_time(models, rpc, budget):
    """ggml-rpc-server serves one client at a time (its accept loop), so a
    second model on it would wait for the first to leave: the idle holder is
    unloaded to make room, a busy one gets a 503 naming the reason. With a
    memory budget (as `serve` always has) the server plans the newcomer on
    the devices it found at start: asking the held server again timed out."""
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models),
                      max_models=3, model=options(cpu_moe=True, rpc=[rpc]), memory_budget=budget)
    with Server(cfg).start() as srv:
        status, a = ask(srv, "alpha")
        assert status == 200 and resident(srv) == ["alpha"]
        status, b = ask(srv, "beta")
        assert status == 200 and resident(srv) == ["beta"], b
        assert metric(srv.url, "shimmy_model_unloads_total") == 1
        status, a2 = ask(srv, "alpha")             # beta leaves the server in turn; alpha answers as before
        assert status == 200 and a2["response"] == a["response"] and resident(srv) == ["alpha"]


def _two_placements(models, rpc, **extra):
    """alpha on the CPU alone; beta on the RPC stand-in with --cpu-moe (its
    experts in host RAM). Returns the config and the figures admission weighs."""
    from shimmy_py.serving.models.settings import ModelSettings
    from shimmy_py.serving.models.state import State
    settings = {"beta": ModelSettings(options(rpc=(rpc,), cpu_moe=True))}
    base = dict(ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models), settings=settings)
    probe = State(config(None, **base))
    alpha, beta = probe.plans.need("alpha"), probe.plans.need("beta")
    acc = next(d for d in beta if d != "CPU")
    beta_fit, fit_plan = probe.plans.replan("beta", {"CPU": 1 << 40, acc: 1 << 40})
    probe.pool.close()
    # host RAM holds alpha and beta's fit plan (experts on the accelerator), not its cpu-moe plan
    host = alpha["CPU"] + (beta_fit["CPU"] + beta["CPU"]) // 2
    return (config(None, **base, memory_budget={"CPU": host, acc: 1 << 40}, **extra), beta, beta_fit,
            fit_plan.weights_by_device())


@pytest.mark.parametrize("policy", ["offload", "unload"])
def test_a_newcomer_is_replanned_into_what_is_left_or_the_idle_make_room(models, rpc, policy):
    """Host RAM cannot hold alpha beside beta's cpu-moe plan. Policy offload:
    beta is planned with fit into what is left (its experts to the
    accelerator) and alpha stays; policy unload: alpha (idle) goes and beta
    loads as configured. Either way alpha's conversation cache yields first."""
    cfg, beta_own, beta_fit, fit_weights = _two_placements(models, rpc, admission=policy)
    assert beta_fit["CPU"] < beta_own["CPU"]
    with Server(cfg).start() as srv:
        assert ask(srv, "alpha")[0] == 200
        [alpha] = post_json(srv.url, "/api/ps", None)[1]["models"]
        assert 0 < alpha["cache_ram_bytes"] < cfg.cache_ram        # what host RAM the model left, not 8 GiB
        status, body = ask(srv, "beta")
        assert status == 200, body
        ps = {m["name"]: m for m in post_json(srv.url, "/api/ps", None)[1]["models"]}
        reasons = srv.state.pool.stats.reasons
        if policy == "offload":
            assert set(ps) == {"alpha", "beta"}
            assert ps["alpha"]["cache_ram_bytes"] < alpha["cache_ram_bytes"]        # cut for beta
            assert ps["beta"]["planned_bytes"] == beta_fit
            assert ps["beta"]["devices"] == fit_weights                      # the worker loaded that plan
            assert any("re-planned 'beta' with fit" in r for r in reasons), reasons
            held = sum(m["planned_bytes"].get("CPU", 0) + m["cache_ram_bytes"] for m in ps.values())
            assert held <= cfg.memory_budget["CPU"]
        else:
            assert set(ps) == {"beta"} and ps["beta"]["planned_bytes"] == beta_own
            assert any("unloading 'alpha'" in r and "memory on CPU" in r for r in reasons), reasons


def test_a_newcomer_over_the_budget_alone_is_planned_with_fit(models, rpc):
    """beta's own plan (everything on the accelerator) is over the
    accelerator's budget: it loads planned with fit instead of a 503."""
    from shimmy_py.gguf_io.tensors import read_table
    from shimmy_py.serving.models.settings import ModelSettings
    from shimmy_py.serving.models.state import State
    base = dict(ctx=256, parallel=1, known_paths=(Path(models[1]),),
                settings={"beta": ModelSettings(options(rpc=(rpc,)))})
    probe = State(config(None, **base))
    own = probe.plans.need("beta")
    probe.pool.close()
    acc = next(d for d in own if d != "CPU")
    experts = read_table(models[1]).by_role()["routed_experts"].nbytes
    cfg = config(None, **base, memory_budget={acc: own[acc] - experts // 2})   # half of them fit
    with Server(cfg).start() as srv:
        status, body = ask(srv, "beta")
        assert status == 200, body
        [ps] = post_json(srv.url, "/api/ps", None)[1]["models"]
        assert ps["planned_bytes"][acc] <= cfg.memory_budget[acc] < own[acc]
        assert ps["devices"]["CPU"] > 0 and ps["devices"][acc] < own[acc]


def test_with_the_resident_model_busy_the_newcomer_is_replanned_not_refused(models, rpc):
    """Policy unload, but alpha is busy: beta is planned with fit into what is left."""
    cfg, _, beta_fit, fit_weights = _two_placements(models, rpc, admission="unload")
    with Server(cfg).start() as srv:
        assert ask(srv, "alpha")[0] == 200
        busy = threading.Thread(target=lambda: ask(srv, "alpha", max_tokens=400))
        busy.start()
        assert wait_for(lambda: post_json(srv.url, "/api/ps", None)[1]["models"][0]["active_requests"] == 1)
        status, body = ask(srv, "beta")
        busy.join()
        assert status == 200, body
        ps = {m["name"]: m for m in post_json(srv.url, "/api/ps", None)[1]["models"]}
        assert set(ps) == {"alpha", "beta"} and ps["beta"]["devices"] == fit_weights
        assert any("re-planned 'beta' with fit (the busy models leave too little)" in r
                   for r in srv.state.pool.stats.reasons)


def test_max_models_holds_while_models_swap(models):
    """--max-models 1, two models alternating under 8 clients: an unloaded
    model's worker ends before the next one starts, so there is never more
    than one worker process (there were up to 4: the evicted one stopped in
    the background while the newcomer loaded)."""
    import psutil
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models), max_models=1,
                 admit_wait=60.0)           # a request for the other model waits for the busy one to go idle
    with Server(cfg).start() as srv:
        me, most, stop = psutil.Process(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    # the server's own children: a descendant with a worker's command line
                    # that is not this server's worker (a worker's forked child) does not count
                    workers = [c for c in me.children()
                               if "shimmy_py.serving.worker" in " ".join(c.cmdline())]
                except psutil.Error:
                    continue
                most[0] = max(most[0], len(workers))
                time.sleep(0.005)
        sampler = threading.Thread(target=sample)
        sampler.start()
        answers = []

        def client(i):
            for j in range(4):
                answers.append((["alpha", "beta"][(i + j) % 2], ask(srv, ["alpha", "beta"][(i + j) % 2])[0]))
        clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        stop.set()
        sampler.join()
        assert most[0] == 1, most
        assert sorted(answers) == sorted((m, 200) for m, _ in answers)    # all served, taking turns
        assert metric(srv.url, "shimmy_model_loads_total") >= 2


def test_models_computing_at_once_share_the_cores(tmp_path):
    """Two models streaming at once compute with their share of the cores
    (serving/threads.py: with a thread per core each, OpenMP's spinning
    barriers on an oversubscribed CPU cost more than half of each one's
    speed); alone again, a model computes with its own count. The models
    are `looper`s (their greedy output repeats and never ends), so the two
    streams run until the test closes them. Each worker reports the threads
    its last step ran on (/api/ps "threads")."""
    import http.client
    import json

    from shimmy_py import defaults
    from shimmy_py.serving.models.threads import thread_shares
    from shimmy_py.synthetic.behaviours import looper
    paths = [looper(tmp_path / "alpha.gguf", seed=1), looper(tmp_path / "beta.gguf", seed=2)]
    own = 2 * defaults.threads()               # more than the cores even alone: a share is always smaller
    expected = thread_shares({"alpha": own, "beta": own}, ["alpha", "beta"], defaults.threads())
    assert expected["alpha"] < own
    cfg = config(None, ctx=4096, parallel=1, known_paths=tuple(paths), max_models=2, threads=own)
    with Server(cfg).start() as srv:
        host, port = srv.url.split("//")[1].split(":")
        streams = []
        for name in ("alpha", "beta"):
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/api/generate", json.dumps({"model": name, "prompt": "Hello", "max_tokens": 4000,
                                                              "temperature": 0, "stream": True}))
            response = conn.getresponse()
            assert response.status == 200 and response.readline().startswith(b"data: ")   # shimmy's SSE
            streams.append(conn)

        def threads():
            return {m["name"]: m["threads"] for m in post_json(srv.url, "/api/ps", None)[1]["models"]}
        assert wait_for(lambda: threads() == expected), threads()
        for conn in streams:                    # the clients go away: both requests end
            conn.close()
        assert wait_for(lambda: all(m["active_requests"] == 0
                                    for m in post_json(srv.url, "/api/ps", None)[1]["models"]))
        status, _ = ask(srv, "alpha", max_tokens=64)
        assert status == 200
        assert wait_for(lambda: threads()["alpha"] == own), threads()


def test_a_num_ctx_above_the_usual_loads_the_model_at_it(models):
    """Ollama loads a model at the context a request asks (options.num_ctx),
    capped at what it was trained for; a model already resident and idle is
    loaded again at it. Each load here is counted by admission as any load."""
    cfg = config(None, ctx=256, parallel=1, known_paths=tuple(Path(m) for m in models))
    trained = read_table(models[0]).hparams.n_ctx_train
    chat = {"model": "alpha", "messages": [{"role": "user", "content": "Hi"}], "stream": False}

    def loaded_context():
        return post_json(srv.url, "/api/ps", None)[1]["models"][0]["context_length"]
    with Server(cfg).start() as srv:
        status, _ = post_json(srv.url, "/api/chat", {**chat, "options": {"num_ctx": 1024, "num_predict": 2}})
        assert status == 200 and loaded_context() == 1024
        status, _ = post_json(srv.url, "/api/chat", {**chat, "options": {"num_ctx": 2048, "num_predict": 2}})
        assert status == 200 and loaded_context() == 2048     # resident and idle: loaded again at it
        status, _ = post_json(srv.url, "/api/chat", {**chat, "options": {"num_ctx": 1024, "num_predict": 2}})
        assert status == 200 and loaded_context() == 2048     # less than it holds: served as it is
        assert ask(srv, "alpha", keep_alive=0)[0] == 200
        assert wait_for(lambda: resident(srv) == [])
        status, _ = post_json(srv.url, "/api/chat", {**chat, "options": {"num_ctx": 1 << 20, "num_predict": 2}})
        assert status == 200 and loaded_context() == trained
        assert ask(srv, "alpha", keep_alive=0)[0] == 200
        assert wait_for(lambda: resident(srv) == [])
        assert ask(srv, "alpha")[0] == 200 and loaded_context() == 256    # no num_ctx: the usual context
