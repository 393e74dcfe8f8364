import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

#: Test files that take minutes (they run the workflow on copies of the project, or
#: every oracle case): collected first, so that with pytest-xdist (make test: -n CORES
#: --dist loadfile) they start at once on separate workers instead of ending the run
#: on one worker while the other idles.
SLOW_FIRST = ("test_cluster.py", "test_cli_malformed.py", "test_faults.py", "test_workflow.py",
              "test_oracle_conformance.py", "test_figopts_workflow.py", "test_report.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: order kept
