"""The tmux half: the session wanted and the plan that reconciles a running
one (plan.py, pure), and the tmux server it is applied to (session.py)."""
