# nbgrader settings for a course built on these chapters. Copy this file to the root of your
# nbgrader course (next to source/, submitted/, ...) and set course_id; everything else can
# stay as it is. See "Grading a class with nbgrader" in book/instructors.md.
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearOutput,
    DeduplicateIds,
    NbGraderPreprocessor,
    OverwriteCells,
    OverwriteKernelspec,
)

c = get_config()  # noqa: F821 (provided by nbgrader when it reads this file)

c.CourseDirectory.course_id = "fcn-course"

# The fast grading path: code cells tagged "skip-when-grading" are skipped by `nbgrader
# autograde`. They are the chapter's own trainings and experiments that no autograded test
# depends on; the cells that set up the data and the students' answers still run. Leave this
# line out to execute every cell, as the book build does (minutes per submission on a 2-core
# CPU; see the timings in the instructors' guide).
c.Execute.skip_cells_with_tag = "skip-when-grading"

# nbgrader stops a cell after 30 s by default; a student's training exercise (Chapter 7) runs
# for about half a minute on a 2-core CPU, longer on a slower one.
c.Execute.timeout = 600


class RunGradedCells(NbGraderPreprocessor):
    """Graded and locked cells always run: nbgrader restores their source from the release but
    not their tags, so a skip tag added in a submission is dropped here (a skipped test cell
    would show no error, and nbgrader would give it full marks)."""

    def preprocess_cell(self, cell, resources, index):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") or meta.get("locked"):
            skips = {"skip-when-grading", "skip-execution"}
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t not in skips]
        return cell, resources


# nbgrader's own cleaning steps before autograding, with RunGradedCells after OverwriteCells.
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    OverwriteCells,
    RunGradedCells,
    CheckCellMetadata,
]
