"""The tmux plan as a pure function: what a reload keeps, kills, respawns,
adds and moves, given the layout wanted and the session as read."""

from __future__ import annotations

from atelier.tmux.plan import (WINDOW_OPTIONS, Layout, PaneSpec, SeenPane, SeenWindow, container_layout,
                               key_of, new_session, plan)


def layout(**windows) -> Layout:
    return Layout(tuple((name, tuple(PaneSpec(k, "exec sh") for k in keys)) for name, keys in windows.items()))


def seen(**windows) -> list[SeenWindow]:
    """Windows as read: pane ids are %<key>, a key ending in ! is a dead pane."""
    out = []
    for index, (name, keys) in enumerate(windows.items()):
        out.append(SeenWindow(f"@{index}", name, tuple(SeenPane(f"%{k.rstrip('!')}", k.rstrip("!"), k.endswith("!"))
                                                        for k in keys)))
    return out


def run(want, have):
    return plan("s", want, have, WINDOW_OPTIONS)


def test_a_matching_session_gives_an_empty_plan():
    steps = run(layout(init=["i1"], active=["a1", "a2"]), seen(init=["i1"], active=["a1", "a2"]))
    assert steps.empty and steps.kept == ["%i1", "%a1", "%a2"]


def test_a_dead_pane_is_respawned_in_place_and_the_live_ones_kept():
    steps = run(layout(active=["a1", "a2"]), seen(active=["a1!", "a2"]))
    assert steps.commands == [["respawn-pane", "-t", "%a1", "ATELIER_PANE=a1 exec sh"]]
    assert steps.kept == ["%a2"]


def test_panes_of_containers_that_are_gone_go_and_empty_windows_with_them():
    steps = run(layout(init=["i1"]), seen(init=["i1"], standby=["s1"], active=["a1", "a2"]))
    assert ["kill-window", "-t", "@1"] in steps.commands and ["kill-window", "-t", "@2"] in steps.commands
    steps = run(layout(active=["a1"]), seen(active=["a1", "a2"]))
    assert steps.commands[0] == ["kill-pane", "-t", "%a2"] and steps.counts["kill"] == 1


def test_new_panes_go_where_the_model_orders_them():
    steps = run(layout(active=["a0", "a1", "a2", "a3", "a4"]), seen(active=["a1", "a3"]))
    splits = [c for c in steps.commands if c[0] == "split-window"]
    # a0 before a1; a2 right after a1; a4 right after a3.
    assert [(c[c.index("-t") + 1], c[-1].split()[0]) for c in splits] == [
        ("%a1", "ATELIER_PANE=a0"), ("%a1", "ATELIER_PANE=a2"), ("%a3", "ATELIER_PANE=a4")]
    assert "-b" in splits[0] and "-b" not in splits[1]
    assert steps.commands[-1] == ["select-layout", "-t", "@0", "tiled"]


def test_two_new_panes_after_one_kept_are_put_in_last_first():
    steps = run(layout(active=["a1", "a2", "a3"]), seen(active=["a1"]))
    splits = [c[-1].split()[0] for c in steps.commands if c[0] == "split-window"]
    assert splits == ["ATELIER_PANE=a3", "ATELIER_PANE=a2"]  # each right after a1: a1, a2, a3


def test_swapped_panes_and_windows_are_put_back_in_order():
    steps = run(layout(init=["i1"], active=["a1", "a2"]), seen(active=["a2", "a1"], init=["i1"]))
    assert ["swap-pane", "-d", "-s", "%a1", "-t", "%a2"] in steps.commands
    assert ["swap-window", "-d", "-s", "=s:init", "-t", "=s:^"] in steps.commands
    assert ["move-window", "-a", "-d", "-s", "=s:active", "-t", "=s:init"] in steps.commands


def test_a_second_window_of_one_name_goes_but_the_users_own_panes_stay():
    have = seen(init=["i1"]) + [SeenWindow("@9", "init", (SeenPane("%x", "i1", False),))]
    have[0] = SeenWindow("@0", "init", (SeenPane("%i1", "i1", False), SeenPane("%shell", None, False)))
    steps = run(layout(init=["i1"]), have)
    assert ["kill-window", "-t", "@9"] in steps.commands
    assert not any("%shell" in c for c in steps.commands)


def test_a_window_the_user_made_stays_and_atelier_panes_join_one_that_holds_theirs():
    have = [SeenWindow("@0", "scratch", (SeenPane("%pgbench", None, False),)),
            SeenWindow("@1", "active", (SeenPane("%mine", None, False),)),
            SeenWindow("@2", "gone", (SeenPane("%old", "old", False), SeenPane("%keep", None, False)))]
    steps = run(layout(active=["a1", "a2"]), have)
    assert not any("%pgbench" in c or "%mine" in c or "%keep" in c for c in steps.commands if c[0].startswith("kill"))
    assert ["kill-pane", "-t", "%old"] in steps.commands
    splits = [c for c in steps.commands if c[0] == "split-window"]
    assert [c[c.index("-t") + 1] for c in splits] == ["%mine", "%mine"]
    assert [c[-1].split()[0] for c in splits] == ["ATELIER_PANE=a2", "ATELIER_PANE=a1"]


def test_a_new_session_sets_its_options_before_its_panes():
    steps = new_session("proj", layout(init=["i1"], active=["a1", "a2"]))
    words = [c[0] for c in steps.commands]
    assert words[0] == "new-session" and words.index("set-option") < words.index("new-window")
    history = next(c for c in steps.commands if "history-limit" in c)
    assert history[-1] == "10000" and ["kill-window", "-t", "=proj:atelier-setup"] in steps.commands
    assert ["bind-key", "-T", "prefix", "C-s", "set-option", "-w", "synchronize-panes"] in steps.commands
    assert any("remain-on-exit" in c for c in steps.commands)


def test_keys_ride_in_the_start_command():
    assert key_of("ATELIER_PANE=debian12-pg15-active exec ssh -F x -t debian12-pg15-active") == \
        "debian12-pg15-active"
    assert key_of('"ATELIER_PANE=status exec sh"') == "status" and key_of("bash") is None


def test_container_layout_follows_roles_then_the_model(make_env):
    env = make_env("debian")
    servers = [c for c in env.containers if c.systemd]
    built = container_layout(servers, "/s/ssh_config", {"status": "exec true"})
    assert [name for name, _ in built.windows] == ["init", "active", "standby", "standalone", "services"]
    assert [p.key for p in dict(built.windows)["standby"]] == ["debian12-pg15-standby", "debian13-pg17-standby",
                                                              "debian14-pg18-standby"]
    assert dict(built.windows)["init"][0].command == "exec ssh -F /s/ssh_config -t debian12-init"
