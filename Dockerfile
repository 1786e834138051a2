# FaceComp's Streamlit app in a container: CPU only, weights inside the image.
#   docker build -t facecomp .
#   docker run --rm -p 8501:8501 facecomp        # then open http://localhost:8501
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The same requirements file as `pip install -r requirements.txt` outside the container,
# installed first so that code changes do not reinstall the packages.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY .streamlit/ .streamlit/
COPY app.py home.py ./
COPY facecomp/ facecomp/
COPY pages/ pages/
COPY weights/ weights/

RUN useradd --create-home facecomp
USER facecomp
# Home's live example, computed once here and kept in the user's cache (facecomp/app/first_page.py):
# a new container's first page draws without waiting for torch and the models.
RUN python -c "from facecomp.app.warm_up import warm_up; warm_up()"

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"

CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501"]
