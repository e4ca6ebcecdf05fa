"""The fusion pipeline that ``xfusion fuse``, ``xfusion check`` and ``xfusion evaluate`` are built from.

A run goes through the same stages whichever command asks for it:

1. **sources** (``sources.Experiment``): both cameras opened and checked against each other, the key-frame
   schedule (``--period``, an index file, or the cameras' clocks), the HR key frames put on the x4 LR grid
   (``--transform``) and the pixels both cameras saw;
2. **streams** (``streams``): a method fuses the time steps asked of it: a network of any registered family
   (window or segment kind), tile by tile through ``SequenceInference``, or a classical baseline;
3. **sinks** (``sinks``): what a run does with each fused frame: the TIFF/HDF5 writer, the LR-consistency
   maps, the report's player and the video. Each writes under a temporary name and puts its output in place
   when the run ends well, or removes what it made when the run fails.

LR consistency (``consistency``) is the stage between streams and sinks in ``fuse``: the LR camera fitted at the
key frames, each fused frame compared with the LR frame recorded at its time.

``fuse.fuse`` streams every time step of a real experiment to its sinks, ``check.check`` holds out each
interior key frame and scores it, ``evaluate.evaluate`` compares every method on virtual experiments. Their
options are the records of ``config``.
"""
