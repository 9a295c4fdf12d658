
from squeezeflow.models import ModelSpec
from squeezeflow.sweep import Point, dominates, pareto_front, plot_front


def pt(acc, size, lat, name="r"):
    return Point(1.0, name, acc, size, lat, 0, 0)


def test_front_keeps_exactly_the_non_dominated_points():
    pts = [pt(97, 1000, 0.05, "a"), pt(96, 100, 0.02, "b"), pt(95, 200, 0.03, "c"), pt(97, 1000, 0.05, "twin"),
           pt(90, 50, 0.04, "d")]
    marked = {p.recipe: p.on_front for p in pareto_front(pts)}
    # c is worse than b on all three; d is smallest; a and its identical twin do not dominate each other
    assert marked == {"a": True, "b": True, "c": False, "twin": True, "d": True}
    assert dominates(pts[1], pts[2]) and not dominates(pts[2], pts[1]) and not dominates(pts[0], pts[3])


def test_scaled_teacher_widths_round_and_stay_positive():
    spec = ModelSpec("cnn", (40,), 10, (64, 128, 128))
    assert spec.scaled(0.25).hidden == (16, 32, 32) and spec.scaled(0.001).hidden == (1, 1, 1)


def test_plot_is_a_png(tmp_path):
    path = tmp_path / "front.png"
    plot_front(pareto_front([pt(97, 1000, 0.05), pt(96, 100, 0.02, "teacher")]), path, "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
