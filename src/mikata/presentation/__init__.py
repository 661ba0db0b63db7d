"""Pieces the HTML report and the web app share: page sections, media (thumbnails, image bytes),
figures, and the map service that draws attribution maps for a run's images.
"""
