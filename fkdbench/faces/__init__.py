"""Faces in pictures: detection, the crop policy, video.

- :mod:`fkdbench.faces.detect`: the face detectors (``DETECTORS``, ``open_detector``);
- :mod:`fkdbench.faces.crop`: the one crop policy, shared by the data readers, ``predict``
  and video (crops from the whole image, a detector's box or the previous keypoints);
- :mod:`fkdbench.faces.evaluate`: detector recall on photos and generated scenes;
- :mod:`fkdbench.faces.video`: video in, overlay video and per-frame keypoints out.

Importing the package imports neither OpenCV nor dlib: each detector loads its library
when it is opened.
"""
