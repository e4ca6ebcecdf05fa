"""Frame and camera I/O: the one place that reads and writes frames.

What it reads: single frames (PNG, TIFF) and folders of them (``frames``), and the files of high-speed
cameras, one reader per format behind one registry (``formats``), with the cameras' metadata parsed apart
(``metadata``). ``FrameStack`` (``stack``) is the frames of one camera from any source; ``Sequence``
(``sequence``) two of them, LR and HR, paired in time.

=========================================================  =========================================
source                                                     reader (``xfusion.io.formats``)
=========================================================  =========================================
frame folder (PNG/TIFF) [+ Phantom .xml / Shimadzu .ini]   ``folder.FolderReader``
multi-page TIFF [+ ``<stem>.xml`` / ``<stem>.ini``]        ``tiff_stack.TiffStackReader``
``file.h5`` holding ``/exchange/data``, or                 ``dataexchange.DataExchangeReader``
``file.h5:<group>/data`` with ``data_white``/``data_dark``
``file.h5:/dataset`` (an (N, H, W) dataset)                ``hdf5.H5DatasetReader`` (memory-mapped)
``x.cih`` / ``x.cihx`` (+ ``x.mraw``)                      ``mraw.MrawReader`` (header: pyMRAW)
``x.cine``                                                 ``cine.CineReader`` (headers: pycine-lite)
=========================================================  =========================================

Intensities: 16-bit data stay 16-bit (read and written as stored, never through 8 bits), and a camera's
frames map to [0, 1] by ONE fixed range (``intensity.IntensityScale``): the one given (``--range``, the
option ``value_range``), else the effective bit depth the file's metadata give (0..4095 for 12 bits in
16-bit words), else the dtype's; never per frame, so a dark frame stays dark.

Times are seconds from each camera's own trigger (t = 0 at the trigger), from per-frame timestamps where
the file has them, else from the frame rate and the number of the first frame. Matching two cameras'
times (``xfusion.schedule.schedule_from_times``) assumes both were triggered by the same signal; a known
trigger delay is ``--time-offset``.

pyMRAW and pycine-lite are the optional extra ``cameras`` (``pip install '.[cameras]'``); a missing one is
one line naming what to install. Every error on bad data is one line naming the file (``SequenceError``).

The names below are for users; code inside ``xfusion`` imports from the submodules.
"""
from xfusion.io.formats import open_source
from xfusion.io.frames import read_frame, write_frame
from xfusion.io.intensity import IntensityScale
from xfusion.io.sequence import Sequence, open_xray_root
from xfusion.io.stack import FrameStack

__all__ = ['FrameStack', 'IntensityScale', 'Sequence', 'open_source', 'open_xray_root', 'read_frame', 'write_frame']
