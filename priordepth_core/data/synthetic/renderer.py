"""Headless OpenGL renderer (moderngl, EGL; Mesa's llvmpipe on a CPU-only machine) of RGB and exact metric depth.

Exact depth: the fragment shader writes the camera-space z of each fragment, interpolated perspective-correctly (z
is linear across a planar triangle, so only float32 rounding remains), into a float32 colour attachment. Visibility
uses a depth buffer holding ``z / far`` written from the same shader: linear depth keeps 24-bit resolution at
``far / 2**24`` (60 micrometres at 1 km) everywhere, so surfaces a few millimetres apart (posters on walls) never
fight, unlike the hyperbolic default.

Projection: OpenCV intrinsics with pixel centres at integer coordinates. Pixel column ``u`` covers [u - 0.5, u + 0.5],
so the image spans x in [-0.5, W - 0.5], which maps to normalised device coordinates [-1, 1]:
``x_ndc = 2 (u + 0.5) / W - 1`` with ``u = fx X/Z + s Y/Z + cx``, and likewise for rows. OpenGL samples fragments at
window coordinates ``i + 0.5``, i.e. exactly at the integer pixel centres. Rows are not flipped: image row v is
window row v, so ``glReadPixels`` (bottom row first) returns the image top row first. This flips handedness, which
only matters for face culling (off: scenes are drawn two-sided).

Sky: pixels no surface covers show a sky whose colour depends only on the viewing direction (clouds projected onto
a plane at infinity), which is what a sky at infinity looks like, and have depth 0 (invalid).
"""

from __future__ import annotations

import moderngl
import numpy as np

from .scenes import Quad, Scene, box_face_quads
from .textures import LAYER_INDEX, texture_library

DEFAULT_NEAR_M = 0.05
DEFAULT_FAR_M = 1000.0

_SCENE_VERTEX = """
#version 330
uniform mat4 T_cam_world;
uniform mat4 projection;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in float in_layer;
in vec3 in_tint;
out vec3 v_world;
out vec3 v_normal;
out vec2 v_uv;
flat out float v_layer;
out vec3 v_tint;
out float v_z;
void main() {
    vec4 camera = T_cam_world * vec4(in_position, 1.0);
    v_z = camera.z;
    v_world = in_position;
    v_normal = in_normal;
    v_uv = in_uv;
    v_layer = in_layer;
    v_tint = in_tint;
    gl_Position = projection * camera;
}
"""

_SCENE_FRAGMENT = """
#version 330
uniform sampler2DArray textures;
uniform vec3 camera_center;
uniform vec3 light_direction;
uniform float light_intensity;
uniform float ambient;
uniform vec3 white_balance;
uniform float far;
in vec3 v_world;
in vec3 v_normal;
in vec2 v_uv;
flat in float v_layer;
in vec3 v_tint;
in float v_z;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;
void main() {
    vec3 n = normalize(v_normal);
    if (dot(n, camera_center - v_world) < 0.0) n = -n;  // two-sided: light the side facing the camera
    vec3 albedo = texture(textures, vec3(v_uv, v_layer)).rgb * v_tint;
    float shade = ambient + light_intensity * max(dot(n, light_direction), 0.0);
    out_color = vec4(clamp(albedo * shade * white_balance, 0.0, 1.0), 1.0);
    out_depth = v_z;
    gl_FragDepth = v_z / far;
}
"""

_SKY_VERTEX = """
#version 330
in vec2 in_position;
void main() { gl_Position = vec4(in_position, 0.0, 1.0); }
"""

_SKY_FRAGMENT = """
#version 330
uniform sampler2DArray textures;
uniform float clouds_layer;
uniform mat3 R_world_cam;
uniform mat3 K_inv;
uniform vec3 white_balance;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;
void main() {
    vec3 pixel = vec3(gl_FragCoord.xy - 0.5, 1.0);  // window row v is image row v (see module docstring)
    vec3 d = normalize(R_world_cam * (K_inv * pixel));
    vec3 horizon = vec3(0.78, 0.83, 0.88);
    vec2 uv = d.xy / max(d.z, 0.03) * 0.12;
    vec3 clouds = texture(textures, vec3(uv, clouds_layer)).rgb;
    vec3 color = mix(horizon, clouds, smoothstep(0.0, 0.25, d.z));
    out_color = vec4(clamp(color * white_balance, 0.0, 1.0), 1.0);
    out_depth = 0.0;
}
"""


def projection_from_intrinsics(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """OpenGL clip matrix for an optical camera (x right, y down, z forward) with OpenCV intrinsics.

    Args:
        K: (3, 3) intrinsics, pixel centres at integer coordinates.
        width, height: image size in pixels.
        near, far: clipping distances along z (metres).

    Returns:
        (4, 4) P with ``P @ [X, Y, Z, 1] = [x_c, y_c, z_c, Z]`` and ``x_c / Z = 2 (u + 0.5) / width - 1``,
        ``y_c / Z = 2 (v + 0.5) / height - 1`` for the pixel (u, v) that K projects the point to.
    """
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    P = np.zeros((4, 4))
    P[0, :3] = [2 * fx / width, 2 * s / width, 2 * (cx + 0.5) / width - 1]
    P[1, 1:3] = [2 * fy / height, 2 * (cy + 0.5) / height - 1]
    P[2, 2:] = [(far + near) / (far - near), -2 * far * near / (far - near)]
    P[3, 2] = 1.0
    return P


def scene_vertices(scene: Scene) -> np.ndarray:
    """(6 * faces, 12) float32 vertices: position, normal, uv, texture layer, tint, two triangles per face."""
    quads: list[Quad] = list(scene.quads)
    for box in scene.boxes:
        quads.extend(box_face_quads(box))
    corners = np.stack([q.corners for q in quads])  # (Q, 4, 3)
    uv = np.stack([q.uv for q in quads])  # (Q, 4, 2)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    layer = np.array([q.layer for q in quads], dtype=np.float64)
    tint = np.stack([q.tint for q in quads])
    order = [0, 1, 2, 0, 2, 3]
    per_vertex = np.concatenate([
        corners[:, order],
        np.repeat(normal[:, None], 6, axis=1),
        uv[:, order],
        np.repeat(layer[:, None, None], 6, axis=1),
        np.repeat(tint[:, None], 6, axis=1),
    ], axis=2)
    return per_vertex.reshape(-1, 12).astype(np.float32)


class Renderer:
    """Renders a loaded scene from camera poses.

    Args:
        width, height: image size in pixels.
        near, far: clipping distances (metres); geometry closer than ``near`` is clipped.

    Raises:
        RuntimeError: when no EGL OpenGL 3.3 context can be created (needs Mesa's EGL, e.g. ``libegl1`` and
            ``libgl1-mesa-dri`` on Debian/Ubuntu).

    Example:
        >>> with Renderer(320, 240) as renderer:
        ...     renderer.load_scene(scene)
        ...     rgb, depth = renderer.render(K, T_world_cam)
    """

    def __init__(self, width: int, height: int, near: float = DEFAULT_NEAR_M, far: float = DEFAULT_FAR_M):
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height, self.near, self.far = int(width), int(height), float(near), float(far)
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as error:  # moderngl raises plain Exception subclasses from its C loader
            raise RuntimeError(f"cannot create a headless EGL OpenGL context: {error}") from error
        size = (self.width, self.height)
        self._color = self.ctx.renderbuffer(size, components=4)
        self._depth = self.ctx.renderbuffer(size, components=1, dtype="f4")
        self._zbuffer = self.ctx.depth_renderbuffer(size)
        self.fbo = self.ctx.framebuffer(color_attachments=[self._color, self._depth], depth_attachment=self._zbuffer)
        library = texture_library()
        self.textures = self.ctx.texture_array((library.shape[2], library.shape[1], library.shape[0]), 3,
                                               library.tobytes(), alignment=1)
        self.textures.build_mipmaps()
        self.textures.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.textures.anisotropy = 1.0
        self.textures.repeat_x = self.textures.repeat_y = True
        self.scene_program = self.ctx.program(vertex_shader=_SCENE_VERTEX, fragment_shader=_SCENE_FRAGMENT)
        self.sky_program = self.ctx.program(vertex_shader=_SKY_VERTEX, fragment_shader=_SKY_FRAGMENT)
        triangle = np.array([[-1.0, -1.0], [3.0, -1.0], [-1.0, 3.0]], dtype=np.float32)  # covers the viewport
        self._sky_buffer = self.ctx.buffer(triangle.tobytes())
        self._sky_vao = self.ctx.vertex_array(self.sky_program, [(self._sky_buffer, "2f", "in_position")])
        self.sky_program["clouds_layer"].value = float(LAYER_INDEX["clouds"])
        self._scene_buffer = None
        self._scene_vao = None
        self.scene: Scene | None = None

    def load_scene(self, scene: Scene) -> None:
        """Upload a scene's geometry and light (replaces the previous scene)."""
        self._release_scene()
        vertices = scene_vertices(scene)
        self._scene_buffer = self.ctx.buffer(vertices.tobytes())
        self._scene_vao = self.ctx.vertex_array(self.scene_program, [(
            self._scene_buffer, "3f 3f 2f 1f 3f", "in_position", "in_normal", "in_uv", "in_layer", "in_tint")])
        light = scene.lighting
        self.scene_program["light_direction"].value = tuple(map(float, light.direction))
        self.scene_program["light_intensity"].value = float(light.intensity)
        self.scene_program["ambient"].value = float(light.ambient)
        self.scene_program["white_balance"].value = tuple(map(float, light.white_balance))
        self.scene_program["far"].value = self.far
        self.sky_program["white_balance"].value = tuple(map(float, light.white_balance))
        self.scene = scene

    def render(self, K: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Render the loaded scene.

        Args:
            K: (3, 3) intrinsics at this renderer's size (pixel centres at integers).
            T_world_cam: (4, 4) camera-to-world pose of the optical camera frame.

        Returns:
            rgb: (H, W, 3) uint8. depth: (H, W) float32 camera z in metres, 0 where the sky (nothing) is seen.
        """
        if self.scene is None:
            raise RuntimeError("load_scene() must be called before render()")
        K = np.asarray(K, dtype=np.float64)
        T_world_cam = np.asarray(T_world_cam, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must have shape (3, 3), got {K.shape}")
        if T_world_cam.shape != (4, 4):
            raise ValueError(f"T_world_cam must have shape (4, 4), got {T_world_cam.shape}")
        T_cam_world = np.linalg.inv(T_world_cam)
        projection = projection_from_intrinsics(K, self.width, self.height, self.near, self.far)
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.textures.use(0)
        if self.scene.sky:
            self.ctx.disable(moderngl.DEPTH_TEST)
            self.sky_program["R_world_cam"].write(T_world_cam[:3, :3].T.astype("f4").tobytes())
            self.sky_program["K_inv"].write(np.linalg.inv(K).T.astype("f4").tobytes())
            self._sky_vao.render(moderngl.TRIANGLES)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.depth_func = "<"
        # GLSL matrices are column-major: upload transposes.
        self.scene_program["T_cam_world"].write(T_cam_world.T.astype("f4").tobytes())
        self.scene_program["projection"].write(projection.T.astype("f4").tobytes())
        self.scene_program["camera_center"].value = tuple(map(float, T_world_cam[:3, 3]))
        self._scene_vao.render(moderngl.TRIANGLES)
        rgb = np.frombuffer(self.fbo.read(components=3, attachment=0, alignment=1), dtype=np.uint8)
        depth = np.frombuffer(self.fbo.read(components=1, attachment=1, dtype="f4", alignment=1), dtype=np.float32)
        return rgb.reshape(self.height, self.width, 3).copy(), depth.reshape(self.height, self.width).copy()

    def _release_scene(self) -> None:
        if self._scene_vao is not None:
            self._scene_vao.release()
            self._scene_buffer.release()
        self._scene_vao = self._scene_buffer = None
        self.scene = None

    def release(self) -> None:
        """Free the OpenGL context and its resources."""
        self._release_scene()
        self.ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
