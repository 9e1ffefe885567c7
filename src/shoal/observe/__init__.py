"""What ran where and when: a :class:`Timeline` of every task, and progress bars.

``Timeline`` exports to a Chrome trace (Perfetto), a self-contained HTML page, a PNG Gantt chart
(``pip install 'shoal[plot]'``) and a text Gantt for terminals. ``ProgressBar`` shows a map-like
call's progress with tqdm (``pip install 'shoal[progress]'``) or rich (``shoal[rich]``), and plain
lines where there is no terminal.
"""

from shoal.observe.progress import ProgressBar
from shoal.observe.timeline import Note, Timeline, write_html

__all__ = ["Note", "ProgressBar", "Timeline", "write_html"]
