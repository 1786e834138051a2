"""FaceComp: `streamlit run app.py` starts the app; its first page is home.py.

As the server starts, a thread imports torch and the package (1.5-2.5 s), loads the models and
computes Home's live example (ui.warm_up), while the server binds its port and the first
browser loads Streamlit's front end. Streamlit runs the pages as usual: `app` below is how it
learns of them (st.App; `streamlit run` finds it by that name).
"""

import threading

import streamlit as st


def _warm_up() -> None:
    from facecomp import ui

    ui.warm_up()


threading.Thread(target=_warm_up, daemon=True).start()
app = st.App("home.py")
