"""The Streamlit app's side of FaceComp: the pages' frame, widgets, caches, server threads and warm-up."""
