"""Chapter 14's figures (README "14. One step"): the teacher's paths beside single jumps, and
the students' samples above DDIM's at the same number of calls, on the roll and the digits."""
import digits
import roll
from figures import plot_points, plt, save_figure, show_digits


def paths_and_jumps(z_T, paths, one_teacher, one_student, calls, path):
    """The teacher's paths (steps, n, 2) from z_T (n, 2) over the roll's curve, the straight line of
    the teacher's single jump to one_teacher (n, 2), and the student's to one_student."""
    fig, ax = plt.subplots(figsize=(6, 6))
    _, curve = roll.curve_grid(2000)
    ax.plot(curve[:, 0], curve[:, 1], color="0.85", lw=4, zorder=0)
    for k in range(len(z_T)):
        label = (lambda text: text if k == 0 else None)
        ax.plot(paths[:, k, 0], paths[:, k, 1], color="tab:blue", lw=1, label=label(f"teacher, {calls} jumps"))
        ax.plot(*zip(z_T[k], one_teacher[k]), color="tab:red", ls="--", lw=1, label=label("teacher, 1 jump"))
        ax.plot(*zip(z_T[k], one_student[k]), color="tab:green", lw=1, label=label("student, 1 jump"))
    ax.scatter(*paths[0].T, s=12, color="black", zorder=3, label="start, noise")
    ax.set(xlim=(-2.6, 2.6), ylim=(-2.6, 2.6), aspect="equal", title="from noise to the roll: paths and single jumps")
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def student_above_ddim(roll_samples, digit_samples, shown, images):
    """14_roll.png and (if digit_samples) 14_digits.png: for each number of calls in `shown`, the
    student's samples above DDIM's; samples are {calls: (student, DDIM)}."""
    fig, axes = plt.subplots(2, len(shown), figsize=(3 * len(shown), 6.4), squeeze=False)
    for column, calls in enumerate(shown):
        for row, who in enumerate(("student", "DDIM")):
            plot_points(axes[row, column], roll_samples[calls][row], f"{who}, {calls} call{'s' * (calls > 1)}")
    save_figure(fig, images / "14_roll.png")
    if digit_samples is None:
        return
    fig, axes = plt.subplots(2, len(shown), figsize=(3 * len(shown), 6.4), squeeze=False)
    for column, calls in enumerate(shown):
        for row, who in enumerate(("student", "DDIM")):
            show_digits(axes[row, column], digits.to_levels(digit_samples[calls][row][:36]), 6,
                        f"{who}, {calls} call{'s' * (calls > 1)}")
    save_figure(fig, images / "14_digits.png")
